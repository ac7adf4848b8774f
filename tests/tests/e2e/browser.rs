//! A browser as far as single sign-on needs one, for the isolation
//! matrix's cookie cases: a cookie-keeping HTTP client (cookies kept per
//! host, as a browser does) that follows no redirect by itself, so the
//! test follows each hop and can stop, keep or replay any of them.
//!
//! Identity's issuer in the suite is its in-cluster URL (the instances
//! reach it there, and redirect browsers to `<issuer>/oauth2/authorize`),
//! while people reach identity through its Ingress host. The browser sends
//! every request for the issuer to the Ingress host instead: what a
//! reverse proxy in front of identity does.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Url;

use crate::harness::{IDENTITY_HOST, Instance, Platform};

/// One answer, as a browser sees it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: String,
}

impl Answer {
    /// A `Set-Cookie` that sets (not clears) cookie `name`.
    pub fn sets(&self, name: &str) -> bool {
        let prefix = format!("{name}=");
        self.set_cookies.iter().any(|line| {
            line.strip_prefix(&prefix)
                .is_some_and(|rest| !rest.starts_with(';') && !line.contains("Max-Age=0"))
        })
    }

    pub fn success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The JSON body's `error` (OAuth 2.0 error answers).
    pub fn error(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// A person signed in at a tenant: the session cookie and its CSRF token,
/// and the code that the callback exchanged for it.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub cookie_name: String,
    pub cookie: String,
    pub csrf: String,
    pub code: String,
}

/// The host of `url`.
pub fn host_of(url: &str) -> String {
    Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The decoded query parameter `name` of `url`.
pub fn query(url: &str, name: &str) -> Option<String> {
    Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `a=1&b=2`, form-encoded.
pub fn form(fields: &[(&str, &str)]) -> String {
    Url::parse_with_params("http://form.invalid/", fields)
        .expect("form")
        .query()
        .unwrap_or_default()
        .to_owned()
}

/// 256 random bits, base64url: a fresh state, nonce, forged code or
/// PKCE verifier (43 characters).
pub fn random() -> String {
    atoll_identity::sessions::random_token(32).expect("random bytes")
}

/// The S256 PKCE challenge of `verifier`: base64url(SHA-256(verifier)).
pub fn s256(verifier: &str) -> String {
    let hex = atoll_identity::sessions::token_hash(verifier);
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The value of the first `<input … name="NAME" value="…">` of `html`.
fn field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(
        html[start..start + end]
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#39;", "'")
            .replace("&amp;", "&"),
    )
}

/// Identity as people reach it: through its Ingress host.
pub fn identity_url(path: &str) -> String {
    format!("http://{IDENTITY_HOST}{path}")
}

/// A browser: cookies per host, redirects followed by the caller.
pub struct Browser {
    http: reqwest::Client,
    jar: HashMap<String, BTreeMap<String, String>>,
    /// Identity's issuer as the instances name it, learnt from the first
    /// redirect to it.
    pub issuer: Option<String>,
}

impl Browser {
    /// A browser that can reach identity and `instances` (through the
    /// ingress).
    pub fn new(platform: &Platform, instances: &[&Instance]) -> Browser {
        let mut hosts = vec![IDENTITY_HOST.to_owned()];
        hosts.extend(instances.iter().map(|i| host_of(&i.url)));
        let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
        Browser {
            http: platform.browser_http(&hosts),
            jar: HashMap::new(),
            issuer: None,
        }
    }

    /// `url` as this browser reaches it: identity's issuer (its in-cluster
    /// URL) replaced by its Ingress host, as a reverse proxy in front of
    /// identity does.
    fn reachable(&self, url: &str) -> String {
        match &self.issuer {
            Some(issuer) if url.starts_with(&format!("{issuer}/")) => {
                identity_url(&url[issuer.len()..])
            }
            _ => url.to_owned(),
        }
    }

    /// Where a redirect from `from` to `location` leads (relative
    /// locations resolved against `from`).
    pub fn next(&self, from: &str, location: &str) -> String {
        let from = Url::parse(&self.reachable(from)).expect("URL");
        from.join(location).expect("location").to_string()
    }

    /// Cookie `name` as this browser keeps it for `url`'s host.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        let host = host_of(&self.reachable(url));
        self.jar.get(&host)?.get(name).cloned()
    }

    /// Keeps cookie `name` for `url`'s host (an attacker planting one).
    pub fn plant(&mut self, url: &str, name: &str, value: &str) {
        let host = host_of(&self.reachable(url));
        self.jar
            .entry(host)
            .or_default()
            .insert(name.into(), value.into());
    }

    pub async fn get(&mut self, url: &str) -> Answer {
        self.send("GET", url, &[], None).await
    }

    /// A request with this browser's cookies for the host, `headers` and a
    /// body (content type, text).
    pub async fn send(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, String)>,
    ) -> Answer {
        let url = self.reachable(url);
        let host = host_of(&url);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method.clone(), &url);
        if let Some(cookies) = self.jar.get(&host).filter(|c| !c.is_empty()) {
            let line: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header("cookie", line.join("; "));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        // The URL may hold a code: errors name the host and path only.
        let path = Url::parse(&url)
            .map(|u| u.path().to_owned())
            .unwrap_or_default();
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {host}{path}: {e}"));
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let location = header("location");
        let set_cookies: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        for line in &set_cookies {
            self.remember(&host, line);
        }
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        Answer {
            status,
            location,
            set_cookies,
            body,
        }
    }

    fn remember(&mut self, host: &str, line: &str) {
        let Some((name, rest)) = line.split_once('=') else {
            return;
        };
        let value = rest.split(';').next().unwrap_or_default();
        let jar = self.jar.entry(host.to_owned()).or_default();
        if line.contains("Max-Age=0") || value.is_empty() {
            jar.remove(name);
        } else {
            jar.insert(name.into(), value.into());
        }
    }

    /// `/auth/login` at `instance`: identity's authorization URL the
    /// instance redirects to (with its pending sign-in's `state`).
    pub async fn start(&mut self, instance: &Instance) -> String {
        let login = self
            .get(&format!("{}/auth/login?return_to=/", instance.url))
            .await;
        assert_eq!(
            login.status, 302,
            "/auth/login at {}: {}",
            instance.url, login.body
        );
        let authorize = login.location.expect("a redirect to identity");
        let (issuer, _) = authorize
            .split_once("/oauth2/authorize")
            .expect("identity's authorization endpoint");
        self.issuer = Some(issuer.to_owned());
        authorize
    }

    /// Identity's answer to `authorize`: the callback URL it redirects to,
    /// after its login form when there is no SSO session yet (`login`:
    /// e-mail and password).
    pub async fn authorize(&mut self, authorize: &str, login: Option<(&str, &str)>) -> String {
        let mut answer = self.get(authorize).await;
        if answer.status == 200 {
            let (email, password) = login.expect("identity asks for a login");
            let back = self.log_in(&answer.body, email, password).await;
            answer = self.get(&back).await;
        }
        assert_eq!(answer.status, 302, "authorize: {}", answer.body);
        answer.location.expect("a redirect to the callback")
    }

    /// Identity's login form (a double submit: the form's `_csrf` equals
    /// the login cookie): where identity sends the browser back.
    async fn log_in(&mut self, form_page: &str, email: &str, password: &str) -> String {
        let csrf = field(form_page, "_csrf").expect("the login form's CSRF token");
        let return_to = field(form_page, "return_to").expect("the login form's return_to");
        let login_url = identity_url("/login");
        let cookie = ["__Host-atoll_login_csrf", "atoll_login_csrf"]
            .iter()
            .find_map(|name| self.cookie(&login_url, name));
        assert_eq!(
            cookie.as_deref(),
            Some(csrf.as_str()),
            "the login form's token is its cookie's (double submit)"
        );
        let fields = [
            ("_csrf", csrf.as_str()),
            ("return_to", return_to.as_str()),
            ("email", email),
            ("password", password),
        ];
        let body = ("application/x-www-form-urlencoded", form(&fields));
        let answer = self.send("POST", &login_url, &[], Some(body)).await;
        assert_eq!(answer.status, 303, "identity's login form: {}", answer.body);
        self.next(&login_url, &answer.location.expect("back to authorize"))
    }

    /// Signs in at `instance` as a person does: `/auth/login`, identity's
    /// authorization endpoint (its login form first when needed), the
    /// callback; then the session's CSRF token from `/auth/session`.
    pub async fn sign_in(&mut self, instance: &Instance, login: (&str, &str)) -> SignedIn {
        let authorize = self.start(instance).await;
        let callback = self.authorize(&authorize, Some(login)).await;
        let code = query(&callback, "code").expect("identity issued a code");
        let answer = self.get(&callback).await;
        assert_eq!(answer.status, 302, "the callback: {}", answer.body);
        let cookie_name = ["__Host-atoll_session", "atoll_session"]
            .into_iter()
            .find(|name| answer.sets(name))
            .expect("the callback sets the session cookie");
        let cookie = self
            .cookie(&instance.url, cookie_name)
            .expect("the session cookie kept");
        let session = self.get(&format!("{}/auth/session", instance.url)).await;
        assert_eq!(session.status, 200, "/auth/session: {}", session.body);
        let csrf = serde_json::from_str::<serde_json::Value>(&session.body)
            .ok()
            .and_then(|v| v["csrfToken"].as_str().map(str::to_owned))
            .expect("the session's CSRF token");
        SignedIn {
            cookie_name: cookie_name.to_owned(),
            cookie,
            csrf,
            code,
        }
    }

    /// The instance's callback URL for `code` and `state`, as identity
    /// would send the browser there.
    pub fn callback(&self, instance: &Instance, code: &str, state: &str) -> String {
        let issuer = self.issuer.clone().unwrap_or_default();
        let query = form(&[("code", code), ("state", state), ("iss", &issuer)]);
        format!("{}/auth/callback?{query}", instance.url)
    }
}
