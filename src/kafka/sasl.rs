//! The SASL layer of a connection on a SASL listener (KIP-43, KIP-152,
//! KIP-368). Every frame passes here before the API layer: until the
//! client has authenticated only ApiVersions, SaslHandshake and
//! SaslAuthenticate are taken, and anything else closes the connection,
//! as Kafka's authenticator does. A v0 handshake is followed by bare
//! tokens; v1 by SaslAuthenticate requests. A failed authentication is
//! answered with SASL_AUTHENTICATION_FAILED, then the connection closes.
//!
//! Frames are taken one at a time, in order, on the connection's reader,
//! so the exchange's state needs no locking, and credentials come from
//! this shard's copy of the metadata.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::sasl_authenticate_response::SaslAuthenticateResponse;
use kafka_protocol::messages::sasl_handshake_response::SaslHandshakeResponse;
use kafka_protocol::messages::{ApiKey, RequestHeader, SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::frame::{self, Frame};
use super::{encode_response, errors, supports};
use crate::config::ListenerConfig;
use crate::node::broker::Broker;
use crate::node::metrics::AuthOutcome;
use crate::security::scram::Step;
use crate::security::{Authenticator, Mechanism};

/// What the connection does with a frame.
pub enum Verdict {
    /// Serve it as a request.
    Serve(Bytes),
    /// Answer with this; the connection goes on.
    Reply(Frame),
    /// Answer with this, then close (the reason is for the log).
    ReplyAndClose(Frame, String),
    /// Close without an answer (a frame the protocol does not allow here).
    Close(String),
}

enum Phase {
    /// Waiting for SaslHandshake (ApiVersions may come first).
    Handshake,
    /// After a v1 handshake: SaslAuthenticate requests carry the tokens.
    Authenticate(Authenticator),
    /// After a v0 handshake: the next frames are bare tokens.
    RawTokens(Authenticator),
    /// Every API is served.
    Authenticated,
}

/// One connection's SASL state.
pub struct SaslSession {
    listener: Rc<ListenerConfig>,
    phase: Phase,
    /// Who authenticated, kept through re-authentication (which must be
    /// the same user with the same mechanism).
    user: Option<(String, Mechanism)>,
    /// When the client must have re-authenticated (connections_max_reauth_ms).
    expires: Option<Instant>,
    max_reauth: Duration,
}

impl SaslSession {
    pub fn new(listener: Rc<ListenerConfig>, max_reauth: Duration) -> Self {
        Self {
            listener,
            phase: Phase::Handshake,
            user: None,
            expires: None,
            max_reauth,
        }
    }

    /// Whether the next frame is a bare token (after a v0 handshake),
    /// which may be shorter than any request.
    /// The authenticated user, once there is one (re-authentication keeps it).
    pub fn user(&self) -> Option<&str> {
        self.user.as_ref().map(|(u, _)| u.as_str())
    }

    pub fn expects_bare_token(&self) -> bool {
        matches!(self.phase, Phase::RawTokens(_))
    }

    pub fn on_frame(&mut self, broker: &Broker, frame: Bytes) -> Verdict {
        if let Phase::RawTokens(_) = self.phase {
            return self.raw_token(broker, &frame);
        }
        let Some(&[k0, k1, v0, v1]) = frame.get(..4) else {
            return Verdict::Close(format!("a {}-byte frame", frame.len()));
        };
        let (key, version) = (i16::from_be_bytes([k0, k1]), i16::from_be_bytes([v0, v1]));
        let api = ApiKey::try_from(key).ok();
        match api {
            // Stateless, and how a client learns what to do next.
            Some(ApiKey::ApiVersions) => Verdict::Serve(frame),
            Some(ApiKey::SaslHandshake) if supports(ApiKey::SaslHandshake, version) => match self.phase {
                Phase::Handshake | Phase::Authenticated => self.handshake(broker, frame, version),
                _ => Verdict::Close("SaslHandshake in the middle of an authentication".into()),
            },
            Some(ApiKey::SaslAuthenticate) if supports(ApiKey::SaslAuthenticate, version) => match self.phase {
                Phase::Authenticate(_) => self.authenticate(broker, frame, version),
                // Kafka's API layer answers ILLEGAL_SASL_STATE.
                Phase::Authenticated => Verdict::Serve(frame),
                _ => Verdict::Close("SaslAuthenticate before SaslHandshake".into()),
            },
            _ => match self.phase {
                Phase::Authenticated => match (self.expires, &self.user) {
                    (Some(at), Some((user, mechanism))) if Instant::now() >= at => {
                        broker
                            .metrics
                            .authentication(&self.listener.name, mechanism.name(), AuthOutcome::Expired);
                        Verdict::Close(format!(
                            "the session of {user} expired without re-authentication (sasl.connections_max_reauth_ms)"
                        ))
                    }
                    _ => Verdict::Serve(frame),
                },
                _ => Verdict::Close(format!(
                    "unexpected Kafka request of type {api:?} during SASL authentication"
                )),
            },
        }
    }

    fn handshake(&mut self, broker: &Broker, mut frame: Bytes, version: i16) -> Verdict {
        let Ok(header) = RequestHeader::decode(&mut frame, ApiKey::SaslHandshake.request_header_version(version))
        else {
            return Verdict::Close("bad SaslHandshake header".into());
        };
        let Ok(req) = SaslHandshakeRequest::decode(&mut frame, version) else {
            return Verdict::Close("SaslHandshake does not decode".into());
        };
        // Checked at start-up.
        let offered = broker.config.sasl_mechanisms().unwrap_or_default();
        let reply = |code: i16| {
            let resp = SaslHandshakeResponse::default()
                .with_error_code(code)
                .with_mechanisms(offered.iter().map(|m| StrBytes::from_static_str(m.name())).collect());
            encode_response(ApiKey::SaslHandshake, header.correlation_id, version, &resp)
        };
        let asked = Mechanism::from_name(req.mechanism.as_str()).filter(|m| offered.contains(m));
        let reauthenticating = matches!(self.phase, Phase::Authenticated);
        match asked {
            Some(m) if !reauthenticating || (version >= 1 && self.user.as_ref().is_some_and(|(_, was)| *was == m)) => {
                let Ok(frame) = reply(errors::NONE) else {
                    return Verdict::Close("SaslHandshake response does not encode".into());
                };
                let auth = Authenticator::new(m);
                self.phase = if version >= 1 {
                    Phase::Authenticate(auth)
                } else {
                    Phase::RawTokens(auth)
                };
                Verdict::Reply(frame)
            }
            _ => {
                // Labelled by what we offer only: a client's string must
                // not grow the metrics.
                let label = Mechanism::from_name(req.mechanism.as_str()).map_or("unsupported", |m| m.name());
                broker
                    .metrics
                    .authentication(&self.listener.name, label, AuthOutcome::Failure);
                match reply(if reauthenticating {
                    errors::ILLEGAL_SASL_STATE
                } else {
                    errors::UNSUPPORTED_SASL_MECHANISM
                }) {
                    Ok(f) => Verdict::ReplyAndClose(f, format!("SASL mechanism {:?} refused", req.mechanism.as_str())),
                    Err(_) => Verdict::Close("SaslHandshake response does not encode".into()),
                }
            }
        }
    }

    fn authenticate(&mut self, broker: &Broker, mut frame: Bytes, version: i16) -> Verdict {
        let Ok(header) = RequestHeader::decode(&mut frame, ApiKey::SaslAuthenticate.request_header_version(version))
        else {
            return Verdict::Close("bad SaslAuthenticate header".into());
        };
        let Ok(req) = SaslAuthenticateRequest::decode(&mut frame, version) else {
            return Verdict::Close("SaslAuthenticate does not decode".into());
        };
        let corr = header.correlation_id;
        let encode = |resp: &SaslAuthenticateResponse| encode_response(ApiKey::SaslAuthenticate, corr, version, resp);
        let reauthenticating = self.user.is_some();
        let Phase::Authenticate(auth) = &mut self.phase else {
            return Verdict::Close("SaslAuthenticate outside an exchange".into());
        };
        let mechanism = auth.mechanism();
        let step = auth.step(&req.auth_bytes, &*broker.meta.borrow(), &broker.plain_logins);
        let outcome = step.and_then(|step| self.settle(step, mechanism));
        match outcome {
            Ok((token, lifetime)) => {
                if lifetime.is_some() {
                    let done = if reauthenticating {
                        AuthOutcome::Reauthenticated
                    } else {
                        AuthOutcome::Success
                    };
                    broker
                        .metrics
                        .authentication(&self.listener.name, mechanism.name(), done);
                }
                let resp = SaslAuthenticateResponse::default()
                    .with_error_code(errors::NONE)
                    .with_auth_bytes(Bytes::from(token))
                    .with_session_lifetime_ms(lifetime.map_or(0, |d| d.as_millis() as i64));
                match encode(&resp) {
                    Ok(f) => Verdict::Reply(f),
                    Err(_) => Verdict::Close("SaslAuthenticate response does not encode".into()),
                }
            }
            Err(e) => {
                broker
                    .metrics
                    .authentication(&self.listener.name, mechanism.name(), AuthOutcome::Failure);
                let resp = SaslAuthenticateResponse::default()
                    .with_error_code(errors::SASL_AUTHENTICATION_FAILED)
                    .with_error_message(Some(errors::message(e.client_message(mechanism, reauthenticating))));
                match encode(&resp) {
                    Ok(f) => Verdict::ReplyAndClose(
                        f,
                        format!("SASL {mechanism} authentication on {} failed: {e}", self.listener.name),
                    ),
                    Err(_) => Verdict::Close("SaslAuthenticate response does not encode".into()),
                }
            }
        }
    }

    /// A v0 exchange: the frame is the token, the answer a bare token, and
    /// a failure closes the connection with no answer (v0 has none).
    fn raw_token(&mut self, broker: &Broker, token: &[u8]) -> Verdict {
        let Phase::RawTokens(auth) = &mut self.phase else {
            return Verdict::Close("a bare SASL token outside an exchange".into());
        };
        let mechanism = auth.mechanism();
        let step = auth.step(token, &*broker.meta.borrow(), &broker.plain_logins);
        match step.and_then(|step| self.settle(step, mechanism)) {
            Ok((token, lifetime)) => {
                if lifetime.is_some() {
                    // v0 exchanges are never re-authentications (KIP-368 needs v1).
                    broker
                        .metrics
                        .authentication(&self.listener.name, mechanism.name(), AuthOutcome::Success);
                }
                Verdict::Reply(frame::raw(&token))
            }
            Err(e) => {
                broker
                    .metrics
                    .authentication(&self.listener.name, mechanism.name(), AuthOutcome::Failure);
                Verdict::Close(format!("SASL authentication with {mechanism} failed: {e}"))
            }
        }
    }

    /// Moves the session on after a step: the token to send, and when the
    /// exchange is over the session's lifetime (zero: unlimited).
    fn settle(
        &mut self,
        step: Step,
        mechanism: Mechanism,
    ) -> Result<(Vec<u8>, Option<Duration>), crate::security::AuthError> {
        match step {
            Step::Challenge(token) => Ok((token, None)),
            Step::Done { response, user } => {
                if let Some((was, _)) = &self.user {
                    if *was != user {
                        return Err(crate::security::AuthError::Refused(format!(
                            "Cannot change principals during re-authentication from User:{was}: User:{user}"
                        )));
                    }
                }
                let max = self.max_reauth;
                self.expires = (!max.is_zero()).then(|| Instant::now() + max);
                self.user = Some((user, mechanism));
                self.phase = Phase::Authenticated;
                Ok((response, Some(max)))
            }
        }
    }
}
