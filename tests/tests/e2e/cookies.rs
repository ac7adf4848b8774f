//! The isolation matrix's cookie cases (#18): alice signed in at iso-acme
//! and carol at iso-globex through identity with a browser's session
//! cookie, then everything one could try with cookies, codes and the
//! sign-in redirects, each request counted and none accepted: another
//! tenant's cookie on every endpoint of the OpenAPI document, a forged,
//! replayed or other tenant's code, a redirect URI that is not registered,
//! a missing or wrong PKCE verifier, and every unsafe request without its
//! CSRF token.

use crate::Report;
use crate::browser::{Answer, Browser, SignedIn, form, identity_url, query, random, s256};
use crate::endpoints::{self, Operation};
use crate::harness::{Instance, Platform};
use crate::scenarios::flow;

/// The two tenants of the matrix and their people.
pub struct Tenants<'a> {
    pub platform: &'a Platform,
    pub acme: &'a Instance,
    pub globex: &'a Instance,
    /// alice (Admin of iso-acme): e-mail, password.
    pub alice: (&'a str, &'a str),
    /// carol (Admin of iso-globex): e-mail, password.
    pub carol: (&'a str, &'a str),
    /// The operations of the instance's OpenAPI document.
    pub operations: &'a [Operation],
    pub acme_execution: &'a str,
    pub globex_execution: &'a str,
}

/// Requests made and those accepted, by case.
#[derive(Default)]
struct Tally {
    requests: usize,
    /// Each case and its requests.
    cases: Vec<(&'static str, usize)>,
    accepted: Vec<String>,
}

impl Tally {
    fn case(&mut self, name: &'static str) {
        self.cases.push((name, 0));
    }

    /// One request of the current case; `refused` is what the case asks.
    fn count(&mut self, what: impl Into<String>, refused: bool) {
        self.requests += 1;
        if let Some((_, requests)) = self.cases.last_mut() {
            *requests += 1;
        }
        if !refused {
            let case = self.cases.last().map(|(name, _)| *name).unwrap_or_default();
            self.accepted.push(format!("{case}: {}", what.into()));
        }
    }
}

fn unsafe_method(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH" | "DELETE")
}

/// A body for the methods that take one (a flow, as the matrix sends).
fn body_for(method: &str) -> Option<(&'static str, String)> {
    (method == "POST" || method == "PUT").then(|| ("application/x-yaml", flow("cookie attacker")))
}

/// A refused callback: 400 and no session cookie.
fn callback_refused(answer: &Answer, session_cookie: &str) -> bool {
    answer.status == 400 && !answer.sets(session_cookie)
}

/// Runs every cookie case; reports the figures and asserts none was
/// accepted.
pub async fn cookie_cases(t: &Tenants<'_>, report: &Report) {
    let (p, acme, globex) = (t.platform, t.acme, t.globex);
    let mut alice = Browser::new(p, &[acme, globex]);
    let alice_in = alice.sign_in(acme, t.alice).await;
    let mut carol = Browser::new(p, &[acme, globex]);
    let carol_in = carol.sign_in(globex, t.carol).await;
    for (what, signed) in [
        ("alice at iso-acme", &alice_in),
        ("carol at iso-globex", &carol_in),
    ] {
        p.remember_secret(&format!("session cookie of {what}"), &signed.cookie);
    }
    // Controls: the cookie stands for alice at acme, and with its CSRF
    // token an unsafe (harmless) call is accepted, so the refusals below
    // are for the tenant, the code, the verifier or the token alone.
    let search = alice
        .get(&format!("{}/api/v1/flows/search", acme.url))
        .await;
    assert_eq!(
        search.status, 200,
        "alice's cookie at acme: {}",
        search.body
    );
    let validate = alice
        .send(
            "POST",
            &format!("{}/api/v1/flows/validate", acme.url),
            &[("x-csrf-token", &alice_in.csrf)],
            Some(("application/x-yaml", flow("csrf control"))),
        )
        .await;
    assert_eq!(
        validate.status, 200,
        "alice's cookie with its CSRF token: {}",
        validate.body
    );
    report.figure(
        "alice signed in at iso-acme, carol at iso-globex through identity's login form \
         (session cookie; CSRF token from /auth/session); the cookie with its token is accepted",
    );

    let mut tally = Tally::default();
    foreign_cookies(t, &mut tally, &alice_in, &carol_in).await;
    forged_code(t, &mut tally, &mut alice, &alice_in).await;
    replayed_code(t, &mut tally, &mut alice, &alice_in).await;
    other_tenants_code(t, &mut tally, &mut alice, &mut carol, &alice_in).await;
    unregistered_redirects(t, &mut tally, &mut alice).await;
    pkce(t, &mut tally, &mut alice).await;
    csrf(t, &mut tally, &mut alice, &alice_in, &carol_in).await;

    report.figure(format!(
        "{} cookie-case requests over {} cases ({}); accepted: {}",
        tally.requests,
        tally.cases.len(),
        tally
            .cases
            .iter()
            .map(|(name, requests)| format!("{name} {requests}"))
            .collect::<Vec<_>>()
            .join(", "),
        tally.accepted.len()
    ));
    assert!(tally.accepted.is_empty(), "accepted: {:#?}", tally.accepted);
}

/// (1) One tenant's session cookie at the other tenant, on every endpoint
/// of the document (both URL forms), with its own CSRF token on unsafe
/// methods: none answered 2xx, and `/auth/session` knows no one.
async fn foreign_cookies(t: &Tenants<'_>, tally: &mut Tally, alice: &SignedIn, carol: &SignedIn) {
    tally.case("another tenant's cookie");
    let rows = [
        (
            alice,
            t.globex,
            "iso-globex",
            "iso-acme",
            t.globex_execution,
        ),
        (carol, t.acme, "iso-acme", "iso-globex", t.acme_execution),
    ];
    for (signed, at, tenant, other, execution) in rows {
        let mut mallory = Browser::new(t.platform, &[at]);
        mallory.plant(&at.url, &signed.cookie_name, &signed.cookie);
        let mut paths = endpoints::endpoints(t.operations, tenant, execution);
        paths.extend(
            endpoints::endpoints(t.operations, other, execution)
                .into_iter()
                .filter(|(_, path, _)| path.contains(other)),
        );
        paths.push(("GET".into(), "/auth/session".into(), false));
        for (method, path, _) in paths {
            let csrf = [("x-csrf-token", signed.csrf.as_str())];
            let headers: &[(&str, &str)] = if unsafe_method(&method) { &csrf } else { &[] };
            let answer = mallory
                .send(
                    &method,
                    &format!("{}{path}", at.url),
                    headers,
                    body_for(&method),
                )
                .await;
            tally.count(
                format!(
                    "{other}'s cookie at {tenant}: {method} {path} -> {}",
                    answer.status
                ),
                !answer.success(),
            );
        }
    }
}

/// (2) A forged code at the callback, with a valid sign-in under way
/// (its state and `atoll_login` cookie): 400, no session.
async fn forged_code(t: &Tenants<'_>, tally: &mut Tally, alice: &mut Browser, signed: &SignedIn) {
    tally.case("forged code");
    let authorize = alice.start(t.acme).await;
    let state = query(&authorize, "state").expect("state");
    let answer = alice.get(&alice.callback(t.acme, &random(), &state)).await;
    tally.count(
        format!("forged code at acme's callback -> {}", answer.status),
        callback_refused(&answer, &signed.cookie_name),
    );
}

/// (3) The code alice's sign-in already exchanged, delivered again: to the
/// callback (with a new sign-in under way) and straight to identity's
/// token endpoint.
async fn replayed_code(t: &Tenants<'_>, tally: &mut Tally, alice: &mut Browser, signed: &SignedIn) {
    tally.case("replayed code");
    let authorize = alice.start(t.acme).await;
    let state = query(&authorize, "state").expect("state");
    let answer = alice
        .get(&alice.callback(t.acme, &signed.code, &state))
        .await;
    tally.count(
        format!("used code at acme's callback -> {}", answer.status),
        callback_refused(&answer, &signed.cookie_name),
    );
    let answer = token(alice, "iso-acme", t.acme, &signed.code, Some(&random())).await;
    tally.count(
        format!(
            "used code at identity's token endpoint -> {} {}",
            answer.status,
            answer.error()
        ),
        answer.status == 400 && answer.error() == "invalid_grant",
    );
}

/// (4) A fresh code identity issued for one tenant, delivered to the other
/// tenant's callback (with a sign-in under way there): refused both ways.
async fn other_tenants_code(
    t: &Tenants<'_>,
    tally: &mut Tally,
    alice: &mut Browser,
    carol: &mut Browser,
    signed: &SignedIn,
) {
    tally.case("another tenant's code");
    for (browser, from, to) in [(alice, t.acme, t.globex), (carol, t.globex, t.acme)] {
        let authorize = browser.start(from).await;
        let callback = browser.authorize(&authorize, None).await;
        let code = query(&callback, "code").expect("a code for its own tenant");
        let there = browser.start(to).await;
        let state = query(&there, "state").expect("state");
        let answer = browser.get(&browser.callback(to, &code, &state)).await;
        tally.count(
            format!(
                "{}'s code at {}'s callback -> {}",
                from.url, to.url, answer.status
            ),
            callback_refused(&answer, &signed.cookie_name),
        );
    }
}

/// Identity's authorization URL (through its Ingress) for `client` and
/// `redirect`, with PKCE `challenge` and `method` when given.
fn authorize_url(
    client: &str,
    redirect: &str,
    challenge: Option<&str>,
    method: Option<&str>,
) -> String {
    let (state, nonce) = (random(), random());
    let mut fields = vec![
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", redirect),
        ("scope", "openid email"),
        ("state", state.as_str()),
        ("nonce", nonce.as_str()),
    ];
    fields.extend(challenge.map(|c| ("code_challenge", c)));
    fields.extend(method.map(|m| ("code_challenge_method", m)));
    identity_url(&format!("/oauth2/authorize?{}", form(&fields)))
}

/// The exchange of `code` at identity's token endpoint (through its
/// Ingress), with `verifier` when given.
async fn token(
    browser: &mut Browser,
    client: &str,
    instance: &Instance,
    code: &str,
    verifier: Option<&str>,
) -> Answer {
    let redirect = format!("{}/auth/callback", instance.url);
    let mut fields = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect.as_str()),
        ("client_id", client),
    ];
    fields.extend(verifier.map(|v| ("code_verifier", v)));
    let body = ("application/x-www-form-urlencoded", form(&fields));
    browser
        .send("POST", &identity_url("/oauth2/token"), &[], Some(body))
        .await
}

/// (5) Redirect URIs that are not the registered one, asked for by a
/// signed-in member: a 400 page, never a redirect.
async fn unregistered_redirects(t: &Tenants<'_>, tally: &mut Tally, alice: &mut Browser) {
    tally.case("unregistered redirect URI");
    let acme_callback = format!("{}/auth/callback", t.acme.url);
    let globex_callback = format!("{}/auth/callback", t.globex.url);
    let challenge = s256(&random());
    let cases = [
        ("iso-acme", globex_callback),
        (
            "iso-acme",
            "http://attacker.example/auth/callback".to_owned(),
        ),
        ("iso-acme", format!("{acme_callback}/x")),
        ("iso-acme", format!("{acme_callback}x")),
        (
            "iso-acme",
            acme_callback.replace("/auth/callback", "/Auth/callback"),
        ),
        ("iso-globex", acme_callback.clone()),
    ];
    for (client, redirect) in cases {
        let url = authorize_url(client, &redirect, Some(&challenge), Some("S256"));
        let answer = alice.get(&url).await;
        tally.count(
            format!("{client} redirecting to {redirect} -> {}", answer.status),
            answer.status == 400 && answer.location.is_none(),
        );
    }
}

/// (6) PKCE: authorization without a challenge or with `plain` issues no
/// code (an error redirect); a code exchanged with no verifier or a wrong
/// one is refused, and (the control) with the right one is not.
async fn pkce(t: &Tenants<'_>, tally: &mut Tally, alice: &mut Browser) {
    tally.case("missing or wrong PKCE");
    let redirect = format!("{}/auth/callback", t.acme.url);
    let verifier = random();
    let challenge = s256(&verifier);
    for (what, c, m) in [
        ("no challenge", None, Some("S256")),
        ("no challenge, no method", None, None),
        ("method plain", Some(verifier.as_str()), Some("plain")),
        (
            "S256 challenge without its method",
            Some(challenge.as_str()),
            None,
        ),
    ] {
        let answer = alice.get(&authorize_url("iso-acme", &redirect, c, m)).await;
        let location = answer.location.clone().unwrap_or_default();
        tally.count(
            format!("authorize with {what} -> {}", answer.status),
            answer.status == 302
                && query(&location, "error").as_deref() == Some("invalid_request")
                && query(&location, "code").is_none(),
        );
    }
    let no_verifier = fresh_code(alice, &redirect, &challenge).await;
    let wrong_verifier = fresh_code(alice, &redirect, &challenge).await;
    let right_verifier = fresh_code(alice, &redirect, &challenge).await;
    let wrong = random();
    for (what, code, sent) in [
        ("no verifier", no_verifier, None),
        ("a wrong verifier", wrong_verifier, Some(wrong.as_str())),
    ] {
        let answer = token(alice, "iso-acme", t.acme, &code, sent).await;
        let error = answer.error();
        tally.count(
            format!("token exchange with {what} -> {} {error}", answer.status),
            answer.status == 400 && (error == "invalid_grant" || error == "invalid_request"),
        );
    }
    let control = token(alice, "iso-acme", t.acme, &right_verifier, Some(&verifier)).await;
    assert_eq!(
        control.status,
        200,
        "the right verifier: {}",
        control.error()
    );
    if let Some(token) = serde_json::from_str::<serde_json::Value>(&control.body)
        .ok()
        .and_then(|v| v["access_token"].as_str().map(str::to_owned))
    {
        t.platform
            .remember_secret("access token of the PKCE control", &token);
    }
}

/// A code identity issues alice for acme with PKCE `challenge`.
async fn fresh_code(alice: &mut Browser, redirect: &str, challenge: &str) -> String {
    let url = authorize_url("iso-acme", redirect, Some(challenge), Some("S256"));
    let answer = alice.get(&url).await;
    assert_eq!(answer.status, 302, "authorize with S256: {}", answer.body);
    query(&answer.location.unwrap_or_default(), "code").expect("a code")
}

/// (7) Every unsafe endpoint of the document at acme with alice's valid
/// cookie and no CSRF token, or carol's (a real token of another session):
/// 403, none accepted.
async fn csrf(
    t: &Tenants<'_>,
    tally: &mut Tally,
    alice: &mut Browser,
    signed: &SignedIn,
    carol: &SignedIn,
) {
    tally.case("CSRF without its token");
    let paths = endpoints::endpoints(t.operations, "iso-acme", t.acme_execution);
    for (method, path, _) in paths.into_iter().filter(|(m, _, _)| unsafe_method(m)) {
        for token in [None, Some(carol.csrf.as_str()), Some("")] {
            let header = token.map(|token| [("x-csrf-token", token)]);
            let headers: &[(&str, &str)] = header.as_ref().map_or(&[], |h| h);
            let answer = alice
                .send(
                    &method,
                    &format!("{}{path}", t.acme.url),
                    headers,
                    body_for(&method),
                )
                .await;
            let what = match token {
                None => "no token",
                Some("") => "an empty token",
                Some(_) => "another session's token",
            };
            tally.count(
                format!(
                    "alice's cookie with {what}: {method} {path} -> {}",
                    answer.status
                ),
                answer.status == 403,
            );
        }
    }
    // Her cookie still works: the refusals ended nothing.
    let session = alice.get(&format!("{}/auth/session", t.acme.url)).await;
    assert_eq!(
        session.status, 200,
        "alice's session after the CSRF refusals"
    );
    // (Compared without printing: a cookie is never shown.)
    assert!(
        alice.cookie(&t.acme.url, &signed.cookie_name).as_deref() == Some(signed.cookie.as_str()),
        "alice's browser still holds the session cookie it signed in with"
    );
}
