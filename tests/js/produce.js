// Creates a topic, produces keyed messages (plain and idempotent) and reads
// the offsets back with kafkajs; prints one JSON line for the test to check.
const { Kafka, logLevel } = require('kafkajs')

const [bootstrap, topic] = process.argv.slice(2)
const kafka = new Kafka({ clientId: 'corestream-test', brokers: [bootstrap], logLevel: logLevel.ERROR })

async function main () {
  const admin = kafka.admin()
  await admin.connect()
  await admin.createTopics({ topics: [{ topic, numPartitions: 2 }] })
  const producer = kafka.producer()
  await producer.connect()
  const messages = Array.from({ length: 100 }, (_, i) => ({ key: `k${i}`, value: `v${i}`, partition: i % 2 }))
  const sent = await producer.send({ topic, acks: -1, messages, compression: 1 /* gzip */ })
  const idem = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
  await idem.connect()
  const idemSent = await idem.send({ topic, acks: -1, messages: [{ value: 'idempotent', partition: 0 }] })
  const offsets = await admin.fetchTopicOffsets(topic)
  const topics = await admin.listTopics()
  await Promise.all([producer.disconnect(), idem.disconnect(), admin.disconnect()])
  console.log(JSON.stringify({ sent, idemSent, offsets, topics }))
}

main().catch(e => { console.error(e); process.exit(1) })
