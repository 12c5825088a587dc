//! Who a client is: listeners' security protocols, TLS (`tls.rs`) and SASL
//! authentication (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512). Pure: the connection layer
//! (`kafka/sasl.rs`) feeds it tokens and credentials from its own shard's
//! copy of the replicated metadata, so authenticating never crosses cores.

pub mod acl;
pub mod scram;
pub mod tls;

use std::cell::RefCell;
use std::collections::HashMap;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use scram::{ScramCredential, ScramMechanism, ScramServer, Step};

/// A listener's security protocol, as Kafka names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecurityProtocol {
    Plaintext,
    SaslPlaintext,
    Ssl,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "PLAINTEXT" => Self::Plaintext,
            "SASL_PLAINTEXT" => Self::SaslPlaintext,
            "SSL" => Self::Ssl,
            "SASL_SSL" => Self::SaslSsl,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    pub fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    pub fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

/// A SASL mechanism the broker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
}

impl Mechanism {
    pub const ALL: [Mechanism; 3] = [
        Mechanism::Scram(ScramMechanism::Sha256),
        Mechanism::Scram(ScramMechanism::Sha512),
        Mechanism::Plain,
    ];

    pub fn from_name(name: &str) -> Option<Self> {
        if name == "PLAIN" {
            return Some(Self::Plain);
        }
        ScramMechanism::from_name(name).map(Self::Scram)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Scram(m) => m.name(),
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Unknown user or wrong password: the client is told no more than
    /// that, so it cannot probe which users exist.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// A message that breaks the mechanism's grammar; the reason is logged,
    /// the client gets the same answer as for bad credentials.
    #[error("malformed SASL message: {0}")]
    Malformed(String),
    /// Refused for a reason the client is told as is.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Internal(String),
}

impl AuthError {
    pub fn malformed(why: impl Into<String>) -> Self {
        Self::Malformed(why.into())
    }

    /// The error message a client gets (Kafka's wording).
    pub fn client_message(&self, mechanism: Mechanism, reauthenticating: bool) -> String {
        match self {
            AuthError::Refused(why) => why.clone(),
            _ => format!(
                "Authentication failed during {} due to invalid credentials with SASL mechanism {mechanism}",
                if reauthenticating {
                    "re-authentication"
                } else {
                    "authentication"
                }
            ),
        }
    }
}

/// Where an authenticator finds users' credentials: the shard's copy of
/// the replicated metadata.
pub trait Credentials {
    fn scram(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential>;
}

/// The server side of one SASL exchange.
pub struct Authenticator {
    mechanism: Mechanism,
    scram: Option<ScramServer>,
}

impl Authenticator {
    pub fn new(mechanism: Mechanism) -> Self {
        let scram = match mechanism {
            Mechanism::Scram(m) => Some(ScramServer::new(m)),
            Mechanism::Plain => None,
        };
        Self { mechanism, scram }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Takes the client's next token.
    pub fn step(
        &mut self,
        token: &[u8],
        credentials: &dyn Credentials,
        logins: &PlainLogins,
    ) -> Result<Step, AuthError> {
        match (&mut self.scram, self.mechanism) {
            (Some(server), Mechanism::Scram(m)) => {
                let nonce = scram::random_nonce()?;
                server.step(token, &|user| credentials.scram(user, m), &nonce)
            }
            _ => plain(token, credentials, logins).map(|user| Step::Done {
                response: Vec::new(),
                user,
            }),
        }
    }
}

/// The client side of one SASL exchange, for corestream's own tools (the
/// CLI, the load generator): `start` gives the first token; each server
/// answer gives the next token to send, or `None` once logged in (SCRAM's
/// last step checks that the server knew the credential).
pub struct ClientExchange {
    scram: Option<scram::ScramClient>,
    step: u8,
}

impl ClientExchange {
    pub fn start(mechanism: Mechanism, user: &str, password: &str) -> Result<(Self, Vec<u8>), AuthError> {
        match mechanism {
            Mechanism::Plain => Ok((
                Self { scram: None, step: 0 },
                format!("\0{user}\0{password}").into_bytes(),
            )),
            Mechanism::Scram(m) => {
                let (client, first) = scram::ScramClient::start(m, user, password, scram::random_nonce()?);
                Ok((
                    Self {
                        scram: Some(client),
                        step: 0,
                    },
                    first,
                ))
            }
        }
    }

    pub fn next(&mut self, answer: &[u8]) -> Result<Option<Vec<u8>>, AuthError> {
        self.step += 1;
        match (&mut self.scram, self.step) {
            (Some(client), 1) => client.finish(answer).map(Some),
            (Some(client), _) => client.verify(answer).map(|()| None),
            (None, _) => Ok(None),
        }
    }
}

/// SASL PLAIN (RFC 4616): `authzid NUL authcid NUL passwd`, checked against
/// the user's SCRAM credential (SHA-512 where the user has one), so one
/// password serves both and the broker stores no password.
fn plain(token: &[u8], credentials: &dyn Credentials, logins: &PlainLogins) -> Result<String, AuthError> {
    let mut parts = token.split(|&b| b == 0);
    let (Some(authzid), Some(user), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::malformed("PLAIN takes authzid NUL user NUL password"));
    };
    let user = std::str::from_utf8(user).map_err(|_| AuthError::malformed("the user name is not UTF-8"))?;
    if user.is_empty() {
        return Err(AuthError::Refused(
            "Authentication failed: username not specified".into(),
        ));
    }
    if password.is_empty() {
        return Err(AuthError::Refused(
            "Authentication failed: password not specified".into(),
        ));
    }
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(AuthError::Refused(
            "Authentication failed: Client requested an authorization id that is different from username".into(),
        ));
    }
    let found = [ScramMechanism::Sha512, ScramMechanism::Sha256]
        .into_iter()
        .find_map(|m| credentials.scram(user, m).map(|c| (m, c)));
    match found {
        Some((_, credential)) if logins.passed_before(user, &credential, password) => Ok(user.to_string()),
        Some((m, credential)) if credential.matches_password(m, password) => {
            logins.remember(user, &credential, password);
            Ok(user.to_string())
        }
        _ => Err(AuthError::InvalidCredentials),
    }
}

/// PLAIN logins that passed, per shard: a password checked against a SCRAM
/// credential costs PBKDF2 (4096 rounds of HMAC-SHA-512, 2-3 ms of the
/// shard's core here), so a client that reconnects with the same password
/// is recognised by a keyed hash of it instead (HMAC-SHA-256 under a
/// random key of this process, never stored). An entry holds for the
/// credential it was checked against: a new password or salt misses.
pub struct PlainLogins {
    key: [u8; 32],
    /// User -> (the StoredKey the password was checked against, its tag).
    passed: RefCell<HashMap<String, PassedLogin>>,
}

type PassedLogin = (Vec<u8>, Vec<u8>);

/// Users remembered per shard; past this the memory is cleared.
const PLAIN_LOGINS_MAX: usize = 10_000;

impl PlainLogins {
    pub fn new() -> Result<Self, AuthError> {
        let mut key = [0u8; 32];
        key.copy_from_slice(&scram::random_bytes(32)?);
        Ok(Self {
            key,
            passed: RefCell::new(HashMap::new()),
        })
    }

    fn tag(&self, password: &[u8]) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes a 32-byte key");
        mac.update(password);
        mac.finalize().into_bytes().to_vec()
    }

    fn passed_before(&self, user: &str, credential: &ScramCredential, password: &[u8]) -> bool {
        self.passed.borrow().get(user).is_some_and(|(stored_key, tag)| {
            *stored_key == credential.stored_key && bool::from(tag.ct_eq(&self.tag(password)))
        })
    }

    fn remember(&self, user: &str, credential: &ScramCredential, password: &[u8]) {
        let mut passed = self.passed.borrow_mut();
        if passed.len() >= PLAIN_LOGINS_MAX {
            passed.clear();
        }
        passed.insert(user.to_string(), (credential.stored_key.clone(), self.tag(password)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Users(Vec<(String, ScramMechanism, ScramCredential)>);

    impl Credentials for Users {
        fn scram(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
            self.0
                .iter()
                .find(|(u, mm, _)| u == user && *mm == m)
                .map(|(_, _, c)| c.clone())
        }
    }

    #[test]
    fn plain_checks_the_scram_credential() {
        let m = ScramMechanism::Sha256;
        let users = Users(vec![("alice".into(), m, m.new_credential("pw", 4096).unwrap())]);
        let logins = PlainLogins::new().unwrap();
        let ok = |t: &[u8]| Authenticator::new(Mechanism::Plain).step(t, &users, &logins);
        assert_eq!(
            ok(b"\0alice\0pw").unwrap(),
            Step::Done {
                response: vec![],
                user: "alice".into()
            }
        );
        assert!(ok(b"alice\0alice\0pw").is_ok());
        assert!(matches!(ok(b"\0alice\0pW"), Err(AuthError::InvalidCredentials)));
        assert!(matches!(ok(b"\0bob\0pw"), Err(AuthError::InvalidCredentials)));
        assert!(matches!(ok(b"bob\0alice\0pw"), Err(AuthError::Refused(_))));
        assert!(matches!(ok(b"\0\0pw"), Err(AuthError::Refused(_))));
        assert!(matches!(ok(b"\0alice\0"), Err(AuthError::Refused(_))));
        assert!(matches!(ok(b"alice"), Err(AuthError::Malformed(_))));
        assert!(matches!(ok(b"\0alice\0pw\0x"), Err(AuthError::Malformed(_))));
        // Remembered after the first login: the same password passes, a
        // wrong one still fails, and a new credential is checked afresh.
        assert!(logins.passed.borrow().contains_key("alice"));
        assert!(ok(b"\0alice\0pw").is_ok());
        assert!(matches!(ok(b"\0alice\0pX"), Err(AuthError::InvalidCredentials)));
        let renewed = Users(vec![("alice".into(), m, m.new_credential("new", 4096).unwrap())]);
        let again = |t: &[u8]| Authenticator::new(Mechanism::Plain).step(t, &renewed, &logins);
        assert!(matches!(again(b"\0alice\0pw"), Err(AuthError::InvalidCredentials)));
        assert!(again(b"\0alice\0new").is_ok());
    }

    #[test]
    fn the_client_exchange_logs_in_with_every_mechanism() {
        let logins = PlainLogins::new().unwrap();
        for mechanism in Mechanism::ALL {
            let users = Users(
                ScramMechanism::ALL
                    .iter()
                    .map(|&m| ("bob".to_string(), m, m.new_credential("pw", 4096).unwrap()))
                    .collect(),
            );
            for (password, ok) in [("pw", true), ("nope", false)] {
                let mut server = Authenticator::new(mechanism);
                let (mut client, mut token) = ClientExchange::start(mechanism, "bob", password).unwrap();
                let logged_in = loop {
                    match server.step(&token, &users, &logins) {
                        Err(_) => break false,
                        Ok(Step::Challenge(answer)) => token = client.next(&answer).unwrap().expect("more to send"),
                        Ok(Step::Done { response, user }) => {
                            assert_eq!(user, "bob");
                            break client.next(&response).unwrap().is_none();
                        }
                    }
                };
                assert_eq!(logged_in, ok, "{mechanism} with {password}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(m.name()), Some(m));
        }
        assert_eq!(Mechanism::from_name("GSSAPI"), None);
        for p in ["PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL"] {
            assert_eq!(SecurityProtocol::from_name(p).unwrap().name(), p);
        }
    }
}
