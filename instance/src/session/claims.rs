//! The claim checks of identity's `id_token` (OpenID Connect Core §3.1.3.7)
//! and back-channel `logout_token` (Back-Channel Logout 1.0 §2.6), once
//! their signature is good (`atoll_identity::verify`). Pure, so they are
//! tested with any time.

use serde::Deserialize;

use super::secret;

/// Clock skew tolerated on `exp` and `iat`.
const LEEWAY: u64 = 60;
/// How old (or how far in the future) a logout token's `iat` may be.
const LOGOUT_MAX_AGE: u64 = 300;
/// The `events` member a logout token must carry.
pub(super) const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The `typ` header of a logout token.
const LOGOUT_TYP: &str = "logout+jwt";

/// `aud`: one audience or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, client_id: &str) -> bool {
        match self {
            Audience::One(aud) => aud == client_id,
            Audience::Many(auds) => auds.iter().any(|a| a == client_id),
        }
    }

    fn is_many(&self) -> bool {
        matches!(self, Audience::Many(auds) if auds.len() > 1)
    }
}

/// The claims of an id_token the instance reads.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct IdClaims {
    pub(super) iss: String,
    pub(super) sub: String,
    pub(super) aud: Audience,
    pub(super) exp: u64,
    pub(super) iat: u64,
    #[serde(default)]
    pub(super) azp: Option<String>,
    #[serde(default)]
    pub(super) nonce: Option<String>,
    #[serde(default)]
    pub(super) sid: Option<String>,
    #[serde(default)]
    pub(super) email: Option<String>,
}

/// The id_token's claims check: issuer, audience (and `azp` when several),
/// expiry, issue time, and the sign-in's `nonce` (constant time).
pub(super) fn check_id_token(
    claims: &IdClaims,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: u64,
) -> Result<(), &'static str> {
    if claims.iss != issuer {
        return Err("it was issued by another issuer");
    }
    if !claims.aud.contains(client_id)
        || (claims.aud.is_many() && claims.azp.as_deref() != Some(client_id))
    {
        return Err("it is for another tenant");
    }
    if claims.exp.saturating_add(LEEWAY) <= now {
        return Err("it has expired");
    }
    if claims.iat > now.saturating_add(LEEWAY) {
        return Err("it is issued in the future");
    }
    if claims.sub.is_empty() {
        return Err("it names no user");
    }
    match &claims.nonce {
        Some(found) if secret::equal(found, nonce) => Ok(()),
        _ => Err("its nonce is not this sign-in's"),
    }
}

/// The claims of a logout token the instance reads.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct LogoutClaims {
    iss: String,
    aud: Audience,
    iat: u64,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    events: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    nonce: Option<serde_json::Value>,
}

/// Whose sessions a good logout token ends, and the `jti` to remember.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LogoutOf {
    pub(super) jti: String,
    /// Identity's SSO session: its sessions end.
    pub(super) sid: Option<String>,
    /// The user: every session ends when no `sid` is given.
    pub(super) sub: Option<String>,
    /// Until when the `jti` must be remembered (seconds since the epoch).
    pub(super) remember_until: u64,
}

/// The logout token's checks: `typ` header, issuer, audience, `iat`
/// within [`LOGOUT_MAX_AGE`], expiry, the back-channel event, no `nonce`,
/// `sid` or `sub`, a `jti`.
pub(super) fn check_logout_token(
    typ: Option<&str>,
    claims: LogoutClaims,
    issuer: &str,
    client_id: &str,
    now: u64,
) -> Result<LogoutOf, &'static str> {
    if !typ.is_some_and(|t| t.eq_ignore_ascii_case(LOGOUT_TYP)) {
        return Err("not a logout token (typ)");
    }
    if claims.iss != issuer {
        return Err("another issuer");
    }
    if !claims.aud.contains(client_id) {
        return Err("another audience");
    }
    if claims.iat.abs_diff(now) > LOGOUT_MAX_AGE {
        return Err("issued too long ago or in the future");
    }
    if claims
        .exp
        .is_some_and(|exp| exp.saturating_add(LEEWAY) <= now)
    {
        return Err("expired");
    }
    let event = claims
        .events
        .as_ref()
        .and_then(|e| e.get(BACKCHANNEL_EVENT));
    if !event.is_some_and(serde_json::Value::is_object) {
        return Err("no back-channel logout event");
    }
    if claims.nonce.is_some() {
        return Err("a nonce (an id_token?)");
    }
    let sid = claims.sid.filter(|s| !s.is_empty());
    let sub = claims.sub.filter(|s| !s.is_empty());
    if sid.is_none() && sub.is_none() {
        return Err("neither sid nor sub");
    }
    let Some(jti) = claims.jti.filter(|j| !j.is_empty() && j.len() <= 256) else {
        return Err("no jti");
    };
    let remember_until = claims.exp.unwrap_or(claims.iat).max(claims.iat) + LOGOUT_MAX_AGE + LEEWAY;
    Ok(LogoutOf {
        jti,
        sid,
        sub,
        remember_until,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISS: &str = "https://id.example";

    fn id_claims(value: serde_json::Value) -> IdClaims {
        serde_json::from_value(value).expect("claims")
    }

    fn good_id() -> serde_json::Value {
        json!({"iss": ISS, "sub": "u1", "aud": "acme", "exp": 2000, "iat": 1000, "nonce": "n1", "sid": "s1"})
    }

    #[test]
    fn an_id_token_must_carry_this_sign_ins_nonce() {
        assert_eq!(
            check_id_token(&id_claims(good_id()), ISS, "acme", "n1", 1500),
            Ok(())
        );
        assert!(check_id_token(&id_claims(good_id()), ISS, "acme", "n2", 1500).is_err());
        let mut no_nonce = good_id();
        no_nonce.as_object_mut().map(|o| o.remove("nonce"));
        assert!(check_id_token(&id_claims(no_nonce), ISS, "acme", "n1", 1500).is_err());
    }

    #[test]
    fn an_id_token_for_another_tenant_or_issuer_or_time_is_refused() {
        let claims = id_claims(good_id());
        assert!(check_id_token(&claims, ISS, "other", "n1", 1500).is_err());
        assert!(check_id_token(&claims, "https://evil", "acme", "n1", 1500).is_err());
        assert!(check_id_token(&claims, ISS, "acme", "n1", 2100).is_err());
        let mut many = good_id();
        many["aud"] = json!(["acme", "other"]);
        assert!(check_id_token(&id_claims(many.clone()), ISS, "acme", "n1", 1500).is_err());
        many["azp"] = json!("acme");
        assert_eq!(
            check_id_token(&id_claims(many), ISS, "acme", "n1", 1500),
            Ok(())
        );
    }

    fn logout(value: serde_json::Value) -> LogoutClaims {
        serde_json::from_value(value).expect("claims")
    }

    fn good_logout() -> serde_json::Value {
        json!({"iss": ISS, "aud": "acme", "iat": 1000, "exp": 1120, "jti": "j1", "sid": "s1", "sub": "u1",
               "events": {BACKCHANNEL_EVENT: {}}})
    }

    #[test]
    fn a_good_logout_token_names_its_sessions() {
        let of = check_logout_token(Some("logout+jwt"), logout(good_logout()), ISS, "acme", 1010)
            .expect("accepted");
        assert_eq!((of.sid.as_deref(), of.jti.as_str()), (Some("s1"), "j1"));
    }

    #[test]
    fn logout_tokens_without_their_marks_are_refused() {
        let check = |typ: Option<&str>, v: serde_json::Value, now: u64| {
            check_logout_token(typ, logout(v), ISS, "acme", now).is_err()
        };
        assert!(check(None, good_logout(), 1010));
        assert!(check(Some("JWT"), good_logout(), 1010));
        assert!(check(Some("logout+jwt"), good_logout(), 1400));
        for (key, value) in [
            ("events", json!({})),
            ("nonce", json!("n")),
            ("aud", json!("other")),
            ("iss", json!("https://evil")),
            ("jti", json!("")),
        ] {
            let mut claims = good_logout();
            claims[key] = value;
            assert!(check(Some("logout+jwt"), claims, 1010), "{key}");
        }
        let mut anonymous = good_logout();
        anonymous.as_object_mut().map(|o| {
            o.remove("sid");
            o.remove("sub")
        });
        assert!(check(Some("logout+jwt"), anonymous, 1010));
    }
}
