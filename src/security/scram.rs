//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks
//! them (KIP-84): credentials, the server's two steps, and a client for the
//! CLI and the tests.
//!
//! The broker keeps per user and mechanism only the salt, the iteration
//! count, StoredKey = H(HMAC(SaltedPassword, "Client Key")) and
//! ServerKey = HMAC(SaltedPassword, "Server Key"): enough to check a
//! client's proof and prove itself, never enough to log in as the user.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::AuthError;

/// Kafka's bounds on a SCRAM credential's iterations (ScramMechanism's
/// minimum; the controller's maximum).
pub const MIN_ITERATIONS: i32 = 4096;
pub const MAX_ITERATIONS: i32 = 16384;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// Kafka's `ScramMechanism` type code (AlterUserScramCredentials).
    pub fn from_type(code: i8) -> Option<Self> {
        match code {
            1 => Some(Self::Sha256),
            2 => Some(Self::Sha512),
            _ => None,
        }
    }

    pub fn type_code(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
            for p in parts {
                mac.update(p);
            }
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Self::Sha256 => run::<Hmac<Sha256>>(key, parts),
            Self::Sha512 => run::<Hmac<Sha512>>(key, parts),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Hi(password, salt, i) of RFC 5802: PBKDF2 with this hash's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Self::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            Self::Sha512 => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }

    /// What the broker stores, from the salted password a client computed
    /// (AlterUserScramCredentials sends that, never the password).
    pub fn credential(self, salt: &[u8], salted_password: &[u8], iterations: i32) -> ScramCredential {
        let client_key = self.hmac(salted_password, &[b"Client Key"]);
        ScramCredential {
            salt: salt.to_vec(),
            stored_key: self.hash(&client_key),
            server_key: self.hmac(salted_password, &[b"Server Key"]),
            iterations,
        }
    }

    /// A new credential for `password` with a random salt.
    pub fn new_credential(self, password: &str, iterations: i32) -> Result<ScramCredential, AuthError> {
        let salt = random_bytes(32)?;
        let salted = self.salted_password(password.as_bytes(), &salt, iterations.max(1) as u32);
        Ok(self.credential(&salt, &salted, iterations))
    }
}

/// One user's SCRAM credential for one mechanism.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys stay out of logs.
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// Whether `password` is the one this credential was made from (SASL
    /// PLAIN checks passwords against the SCRAM credentials, so a user has
    /// one password for both).
    pub fn matches_password(&self, mechanism: ScramMechanism, password: &[u8]) -> bool {
        let Ok(iterations) = u32::try_from(self.iterations) else {
            return false;
        };
        let salted = mechanism.salted_password(password, &self.salt, iterations);
        let client_key = mechanism.hmac(&salted, &[b"Client Key"]);
        bool::from(mechanism.hash(&client_key).ct_eq(&self.stored_key))
    }
}

pub fn random_bytes(n: usize) -> Result<Vec<u8>, AuthError> {
    let mut buf = vec![0u8; n];
    getrandom::getrandom(&mut buf).map_err(|e| AuthError::Internal(format!("no randomness from the OS: {e}")))?;
    Ok(buf)
}

/// A nonce of printable characters without ',' (RFC 5802 `nonce`).
pub fn random_nonce() -> Result<String, AuthError> {
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(24)?))
}

/// `saslname` of RFC 5802: ',' and '=' are sent as "=2C" and "=3D".
fn decode_saslname(s: &str) -> Result<String, AuthError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(AuthError::malformed("a user name holds '=' not followed by 2C or 3D")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn encode_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// The value of attribute `key`, which must stand at `index` of the list.
fn attribute<'a>(parts: &[&'a str], index: usize, key: char) -> Result<&'a str, AuthError> {
    parts
        .get(index)
        .and_then(|p| p.strip_prefix(key))
        .and_then(|p| p.strip_prefix('='))
        .ok_or_else(|| AuthError::malformed(format!("attribute {key}= expected at position {}", index + 1)))
}

fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty() && nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// The client's first message, parsed.
struct ClientFirst {
    /// The GS2 header ("n,," or "y,,", with an authorization id if sent),
    /// which the final message must carry back as its channel binding.
    gs2_header: String,
    authzid: String,
    user: String,
    nonce: String,
    bare: String,
    token_auth: bool,
}

fn parse_client_first(msg: &str) -> Result<ClientFirst, AuthError> {
    let mut parts = msg.splitn(3, ',');
    let (Some(cbind), Some(authz), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(AuthError::malformed("the first message has no GS2 header"));
    };
    match cbind {
        "n" | "y" => {}
        _ if cbind.starts_with("p=") => {
            return Err(AuthError::malformed("channel binding is not supported"));
        }
        _ => return Err(AuthError::malformed("bad GS2 channel binding flag")),
    }
    let authzid = match authz {
        "" => String::new(),
        a => decode_saslname(
            a.strip_prefix("a=")
                .ok_or_else(|| AuthError::malformed("bad GS2 authorization id"))?,
        )?,
    };
    let attrs: Vec<&str> = bare.split(',').collect();
    if attrs.first().is_some_and(|a| a.starts_with("m=")) {
        return Err(AuthError::malformed("mandatory extensions are not supported"));
    }
    let user = decode_saslname(attribute(&attrs, 0, 'n')?)?;
    let nonce = attribute(&attrs, 1, 'r')?.to_string();
    if !valid_nonce(&nonce) {
        return Err(AuthError::malformed("the client nonce is empty or not printable"));
    }
    // Kafka's extensions (KIP-342) follow the nonce; only tokenauth means
    // something, and delegation tokens are not served here.
    let token_auth = attrs.iter().skip(2).any(|a| *a == "tokenauth=true");
    Ok(ClientFirst {
        gs2_header: format!("{cbind},{authz},"),
        authzid,
        user,
        nonce,
        bare: bare.to_string(),
        token_auth,
    })
}

/// The server side of one SCRAM exchange.
pub struct ScramServer {
    mechanism: ScramMechanism,
    state: ServerState,
}

enum ServerState {
    First,
    Final {
        user: String,
        credential: ScramCredential,
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Finished,
}

/// What a step of an exchange produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this and wait for the client's next message.
    Challenge(Vec<u8>),
    /// Send this; the client is `user`.
    Done { response: Vec<u8>, user: String },
}

impl ScramServer {
    pub fn new(mechanism: ScramMechanism) -> Self {
        Self {
            mechanism,
            state: ServerState::First,
        }
    }

    /// Takes the client's next message. `lookup` finds a user's credential
    /// for this mechanism; `server_nonce` is fresh random text (a
    /// parameter so the RFC's test vectors can run).
    pub fn step(
        &mut self,
        msg: &[u8],
        lookup: &dyn Fn(&str) -> Option<ScramCredential>,
        server_nonce: &str,
    ) -> Result<Step, AuthError> {
        let msg = std::str::from_utf8(msg).map_err(|_| AuthError::malformed("a SCRAM message is not UTF-8"))?;
        match std::mem::replace(&mut self.state, ServerState::Finished) {
            ServerState::First => {
                let first = parse_client_first(msg)?;
                if first.token_auth {
                    return Err(AuthError::InvalidCredentials);
                }
                let credential = lookup(&first.user).ok_or(AuthError::InvalidCredentials)?;
                if !first.authzid.is_empty() && first.authzid != first.user {
                    return Err(AuthError::Refused(
                        "Authentication failed: Client requested an authorization id that is different from username"
                            .into(),
                    ));
                }
                if credential.iterations < MIN_ITERATIONS {
                    return Err(AuthError::InvalidCredentials);
                }
                let nonce = format!("{}{server_nonce}", first.nonce);
                let server_first = format!(
                    "r={nonce},s={},i={}",
                    B64.encode(&credential.salt),
                    credential.iterations
                );
                self.state = ServerState::Final {
                    user: first.user,
                    credential,
                    gs2_header: first.gs2_header,
                    client_first_bare: first.bare,
                    server_first: server_first.clone(),
                    nonce,
                };
                Ok(Step::Challenge(server_first.into_bytes()))
            }
            ServerState::Final {
                user,
                credential,
                gs2_header,
                client_first_bare,
                server_first,
                nonce,
            } => {
                let (without_proof, proof) = msg
                    .rsplit_once(",p=")
                    .ok_or_else(|| AuthError::malformed("the final message has no proof"))?;
                let attrs: Vec<&str> = without_proof.split(',').collect();
                let binding = B64
                    .decode(attribute(&attrs, 0, 'c')?)
                    .map_err(|_| AuthError::malformed("the channel binding is not base64"))?;
                if binding != gs2_header.as_bytes() {
                    return Err(AuthError::malformed("the channel binding differs from the GS2 header"));
                }
                // Kafka checks that the nonce ends with ours, and
                // librdkafka 2.0 (Debian 12's kcat) sends the client nonce
                // twice; the proof covers what was sent either way.
                if !attribute(&attrs, 1, 'r')?.ends_with(&nonce) {
                    return Err(AuthError::malformed(
                        "Invalid client nonce in the final client message.",
                    ));
                }
                let proof = B64
                    .decode(proof)
                    .map_err(|_| AuthError::malformed("the proof is not base64"))?;
                let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
                let m = self.mechanism;
                let signature = m.hmac(&credential.stored_key, &[auth_message.as_bytes()]);
                if proof.len() != signature.len() {
                    return Err(AuthError::InvalidCredentials);
                }
                let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
                if !bool::from(m.hash(&client_key).ct_eq(&credential.stored_key)) {
                    return Err(AuthError::InvalidCredentials);
                }
                let server_signature = m.hmac(&credential.server_key, &[auth_message.as_bytes()]);
                Ok(Step::Done {
                    response: format!("v={}", B64.encode(server_signature)).into_bytes(),
                    user,
                })
            }
            ServerState::Finished => Err(AuthError::malformed("the SCRAM exchange is over")),
        }
    }
}

/// The client side, for `corestream` commands against a SASL listener.
pub struct ScramClient {
    mechanism: ScramMechanism,
    password: String,
    client_first_bare: String,
    nonce: String,
    expected_server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// Starts an exchange; returns the client and its first message.
    pub fn start(mechanism: ScramMechanism, user: &str, password: &str, nonce: String) -> (Self, Vec<u8>) {
        let client_first_bare = format!("n={},r={nonce}", encode_saslname(user));
        let first = format!("n,,{client_first_bare}").into_bytes();
        let client = Self {
            mechanism,
            password: password.to_string(),
            client_first_bare,
            nonce,
            expected_server_signature: None,
        };
        (client, first)
    }

    /// Answers the server's first message with the proof.
    pub fn finish(&mut self, server_first: &[u8]) -> Result<Vec<u8>, AuthError> {
        let text =
            std::str::from_utf8(server_first).map_err(|_| AuthError::malformed("the server's message is not UTF-8"))?;
        let attrs: Vec<&str> = text.split(',').collect();
        let nonce = attribute(&attrs, 0, 'r')?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(AuthError::malformed("the server's nonce does not extend ours"));
        }
        let salt = B64
            .decode(attribute(&attrs, 1, 's')?)
            .map_err(|_| AuthError::malformed("the salt is not base64"))?;
        let iterations: u32 = attribute(&attrs, 2, 'i')?
            .parse()
            .map_err(|_| AuthError::malformed("the iteration count is not a number"))?;
        if !(MIN_ITERATIONS as u32..=MAX_ITERATIONS as u32).contains(&iterations) {
            return Err(AuthError::malformed(format!(
                "the server asks for {iterations} iterations, outside [{MIN_ITERATIONS}, {MAX_ITERATIONS}]"
            )));
        }
        let m = self.mechanism;
        let salted = m.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = m.hmac(&salted, &[b"Client Key"]);
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let signature = m.hmac(&stored_key, &[auth_message.as_bytes()]);
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let server_key = m.hmac(&salted, &[b"Server Key"]);
        self.expected_server_signature = Some(m.hmac(&server_key, &[auth_message.as_bytes()]));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server's final message: it knew our credential.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), AuthError> {
        let text =
            std::str::from_utf8(server_final).map_err(|_| AuthError::malformed("the server's message is not UTF-8"))?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(AuthError::Refused(format!("the server refused: {e}")));
        }
        let signature = B64
            .decode(text.strip_prefix("v=").unwrap_or_default())
            .map_err(|_| AuthError::malformed("the server signature is not base64"))?;
        match &self.expected_server_signature {
            Some(expected) if bool::from(expected.ct_eq(&signature)) => Ok(()),
            _ => Err(AuthError::Refused(
                "the server's signature does not match: it does not hold this user's credential".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil".
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str =
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_credential() -> ScramCredential {
        let m = ScramMechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = m.salted_password(b"pencil", &salt, 4096);
        m.credential(&salt, &salted, 4096)
    }

    #[test]
    fn server_follows_rfc7677_test_vector() {
        let cred = rfc_credential();
        let lookup = |u: &str| (u == "user").then(|| cred.clone());
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        let first = server.step(CLIENT_FIRST.as_bytes(), &lookup, SERVER_NONCE).unwrap();
        assert_eq!(first, Step::Challenge(SERVER_FIRST.as_bytes().to_vec()));
        let done = server.step(CLIENT_FINAL.as_bytes(), &lookup, "unused").unwrap();
        assert_eq!(
            done,
            Step::Done {
                response: SERVER_FINAL.as_bytes().to_vec(),
                user: "user".into()
            }
        );
        // Nothing after the exchange.
        assert!(server.step(b"c=biws", &lookup, "x").is_err());
    }

    #[test]
    fn client_follows_rfc7677_test_vector() {
        let (mut client, first) =
            ScramClient::start(ScramMechanism::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO".into());
        assert_eq!(first, CLIENT_FIRST.as_bytes());
        assert_eq!(client.finish(SERVER_FIRST.as_bytes()).unwrap(), CLIENT_FINAL.as_bytes());
        client.verify(SERVER_FINAL.as_bytes()).unwrap();
        assert!(client.verify(b"v=AAAA").is_err());
    }

    #[test]
    fn wrong_password_unknown_user_and_tampering_fail() {
        for m in ScramMechanism::ALL {
            let cred = m.new_credential("secret", 4096).unwrap();
            assert!(cred.matches_password(m, b"secret"));
            assert!(!cred.matches_password(m, b"Secret"));
            let lookup = |u: &str| (u == "al,i=ce").then(|| cred.clone());
            // The right password, with a user name that needs escaping.
            let (mut c, first) = ScramClient::start(m, "al,i=ce", "secret", random_nonce().unwrap());
            let mut s = ScramServer::new(m);
            let Step::Challenge(sf) = s.step(&first, &lookup, "srv").unwrap() else {
                panic!()
            };
            let Step::Done { response, user } = s.step(&c.finish(&sf).unwrap(), &lookup, "srv").unwrap() else {
                panic!()
            };
            assert_eq!(user, "al,i=ce");
            c.verify(&response).unwrap();
            // A wrong password.
            let (mut c, first) = ScramClient::start(m, "al,i=ce", "wrong", "abc".into());
            let mut s = ScramServer::new(m);
            let Step::Challenge(sf) = s.step(&first, &lookup, "srv").unwrap() else {
                panic!()
            };
            assert!(matches!(
                s.step(&c.finish(&sf).unwrap(), &lookup, "srv"),
                Err(AuthError::InvalidCredentials)
            ));
            // An unknown user.
            let (_, first) = ScramClient::start(m, "bob", "secret", "abc".into());
            assert!(matches!(
                ScramServer::new(m).step(&first, &lookup, "srv"),
                Err(AuthError::InvalidCredentials)
            ));
            // A replayed nonce that is not the server's.
            let (mut c, first) = ScramClient::start(m, "al,i=ce", "secret", "abc".into());
            let mut s = ScramServer::new(m);
            let Step::Challenge(sf) = s.step(&first, &lookup, "srv").unwrap() else {
                panic!()
            };
            let fin = String::from_utf8(c.finish(&sf).unwrap()).unwrap().replace("srv", "xyz");
            assert!(s.step(fin.as_bytes(), &lookup, "srv").is_err());
        }
    }

    #[test]
    fn malformed_first_messages_are_refused() {
        let cred = rfc_credential();
        let lookup = |_: &str| Some(cred.clone());
        for bad in [
            "",
            "n,",
            "x,,n=user,r=abc",
            "p=tls-unique,,n=user,r=abc",
            "n,,m=ext,n=user,r=abc",
            "n,,n=us=er,r=abc",
            "n,,n=user",
            "n,,n=user,r=",
            "n,,r=abc,n=user",
            "n,,n=user,r=abc,tokenauth=true",
            "\u{0}\u{0}",
        ] {
            let r = ScramServer::new(ScramMechanism::Sha256).step(bad.as_bytes(), &lookup, "s");
            assert!(r.is_err(), "{bad:?} was taken");
        }
        let r = ScramServer::new(ScramMechanism::Sha256).step(b"n,a=other,n=user,r=abc", &lookup, "s");
        assert!(matches!(r, Err(AuthError::Refused(_))));
        assert!(ScramServer::new(ScramMechanism::Sha256)
            .step(&[0xff, 0xfe], &lookup, "s")
            .is_err());
    }
}
