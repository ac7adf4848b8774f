//! People at the tenant URL, in a real browser: headless Chromium (Debian's
//! `chromium`, driven through `chromedriver`) against `atoll-sandbox`, the
//! command a newcomer runs. alice signs in once through identity, writes a
//! flow in acme's web UI, runs it and watches it finish, then moves to her
//! second tenant without a password; bob (Viewer) sees no edit controls;
//! carol, no member, is told so; logging out ends both tenants' sessions.
//!
//! Screenshots of each page go to `target/browser-screenshots/` (or
//! `ATOLL_ARTIFACTS_DIR`). Skipped, loudly, without Chromium unless
//! `ATOLL_BROWSER_REQUIRED` is set (`scripts/test` sets it and installs
//! Chromium when missing). Needs the workspace binaries (`cargo build
//! --bins`; `cargo test --workspace` builds them).

mod story;
mod webdriver;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use webdriver::{Browser, Driver, browser_binaries};

/// How long the sandbox may take to start and a Tenant to become Ready.
const LIMIT: Duration = Duration::from_secs(180);

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

/// Where screenshots are written.
fn artifacts() -> PathBuf {
    std::env::var_os("ATOLL_ARTIFACTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/browser-screenshots"))
}

/// The sandbox as started for the suite, with what it printed.
struct Sandbox {
    child: tokio::process::Child,
    ingress_port: u16,
    identity: String,
    admin: (String, String),
    kubeconfig: String,
    _dir: tempfile::TempDir,
}

const TENANTS: &str = "\
apiVersion: atoll.dev/v1alpha1
kind: Tenant
metadata:
  name: acme
spec:
  displayName: Acme Corp
  members:
    - user: alice@acme.com
      role: Admin
    - user: bob@acme.com
      role: Viewer
---
apiVersion: atoll.dev/v1alpha1
kind: Tenant
metadata:
  name: globex
spec:
  displayName: Globex
  members:
    - user: alice@acme.com
      role: Editor
";

impl Sandbox {
    async fn start() -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        let tenants = dir.path().join("tenants.yaml");
        std::fs::write(&tenants, TENANTS).expect("tenants file");
        let identity = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_atoll-sandbox"))
            .args([
                "--api",
                "127.0.0.1:0",
                "--ingress",
                "127.0.0.1:0",
                "--identity",
            ])
            .arg(identity.to_string())
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--apply")
            .arg(&tenants)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the sandbox starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut printed = String::new();
        let kubeconfig = tokio::time::timeout(LIMIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                printed.push_str(&line);
                printed.push('\n');
                if let Some(path) = line.strip_prefix("export KUBECONFIG=") {
                    return path.to_owned();
                }
            }
            panic!("the sandbox ended without printing its kubeconfig:\n{printed}");
        })
        .await
        .expect("the sandbox printed its kubeconfig in time");
        // The rest of what it prints comes after the kubeconfig line.
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await
        {
            printed.push_str(&line);
            printed.push('\n');
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        println!("{printed}");
        let ingress_port = printed
            .split("ingress router at http://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|port| port.parse().ok())
            .expect("the ingress address is printed");
        let login = printed
            .split(" as ")
            .nth(1)
            .and_then(|rest| rest.lines().next())
            .expect("the first admin's login is printed");
        let (email, password) = login.split_once(" / ").expect("email / password");
        let acme = format!("open http://acme.atoll.localhost:{ingress_port}/ in a browser");
        assert!(
            printed.contains(&acme),
            "the URL to open is printed:\n{printed}"
        );
        assert!(
            printed.contains(&format!("http://{identity}/login")),
            "identity's sign-in page is printed:\n{printed}"
        );
        Sandbox {
            child,
            ingress_port,
            identity: format!("http://{identity}"),
            admin: (email.to_owned(), password.trim().to_owned()),
            kubeconfig,
            _dir: dir,
        }
    }

    fn tenant_url(&self, tenant: &str) -> String {
        format!("http://{tenant}.atoll.localhost:{}", self.ingress_port)
    }

    fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let out = std::process::Command::new(
            std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()),
        )
        .arg("--kubeconfig")
        .arg(&self.kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    async fn wait_ready(&self, tenant: &str) {
        let (ok, out) = self.kubectl(&[
            "wait",
            "--for=condition=Ready",
            &format!("tenant/{tenant}"),
            "--timeout=180s",
        ]);
        assert!(ok, "{tenant} did not become Ready: {out}");
    }

    /// Creates the suite's people through identity's admin API.
    async fn create_people(&self, people: &[(&str, &str)]) {
        let http = reqwest::Client::new();
        let login: Value = http
            .post(format!("{}/api/v1/login", self.identity))
            .json(&json!({"email": self.admin.0, "password": self.admin.1}))
            .send()
            .await
            .expect("identity answers")
            .json()
            .await
            .expect("login JSON");
        let token = login["token"].as_str().expect("the admin's session");
        for (email, password) in people {
            let answer = http
                .post(format!("{}/api/v1/admin/users", self.identity))
                .bearer_auth(token)
                .json(&json!({"email": email, "password": password}))
                .send()
                .await
                .expect("identity answers");
            assert_eq!(answer.status().as_u16(), 201, "creating {email}");
        }
    }

    async fn stop(mut self) {
        if let Some(pid) = self
            .child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        }
        let _ = tokio::time::timeout(LIMIT, self.child.wait()).await;
    }
}

/// The controls of the page (and of open shadow roots) that have no
/// accessible name, described by tag, type and name.
const UNLABELLED_CONTROLS: &str = r#"
const found = [];
const visit = (root) => {
  for (const el of root.querySelectorAll('input, select, textarea, button, [contenteditable=true]')) {
    if (el.type === 'hidden' || el.hidden || el.closest('[hidden]')) continue;
    const named = (el.labels && el.labels.length > 0)
      || (el.getAttribute('aria-label') || '').trim()
      || el.getAttribute('aria-labelledby')
      || (el.tagName === 'BUTTON' && el.textContent.trim())
      || el.getAttribute('title');
    if (!named) found.push(el.tagName.toLowerCase() + '[type=' + (el.type || '') + '][name=' + (el.name || '') + ']');
  }
  for (const host of root.querySelectorAll('*')) if (host.shadowRoot) visit(host.shadowRoot);
};
visit(document);
return found;
"#;

/// One person's browser, writing numbered screenshots of what they see.
struct Person {
    name: &'static str,
    browser: Browser,
    shots: std::sync::atomic::AtomicUsize,
    _profile: tempfile::TempDir,
}

impl Person {
    async fn new(driver: &Driver, chromium: &Path, name: &'static str) -> Person {
        let profile = tempfile::tempdir().expect("profile dir");
        let failure = artifacts().join(format!("{name}-failure.png"));
        let browser = driver.browser(chromium, profile.path(), failure).await;
        Person {
            name,
            browser,
            shots: std::sync::atomic::AtomicUsize::new(0),
            _profile: profile,
        }
    }

    /// Writes a screenshot of the page, and checks that every control on
    /// it has a name a screen reader can say (a label, `aria-label`,
    /// `aria-labelledby`, a title, or a button's text).
    async fn screenshot(&self, page: &str) {
        let n = self
            .shots
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let path = artifacts().join(format!("{}-{n:02}-{page}.png", self.name));
        self.browser.screenshot(&path).await;
        let unlabelled = self.browser.execute(UNLABELLED_CONTROLS, json!([])).await;
        assert_eq!(
            unlabelled,
            json!([]),
            "controls without a label on {page} ({})",
            self.browser.url().await
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_sign_in_once_and_work_in_their_tenants() {
    let Some((chromium, chromedriver)) = browser_binaries() else {
        assert!(
            std::env::var_os("ATOLL_BROWSER_REQUIRED").is_none(),
            "ATOLL_BROWSER_REQUIRED is set but chromium/chromedriver are missing"
        );
        eprintln!(
            "SKIPPED: the browser suite needs chromium and chromedriver \
             (apt-get install chromium chromium-driver; scripts/test installs them)"
        );
        return;
    };
    let sandbox = Sandbox::start().await;
    sandbox
        .create_people(&[
            ("alice@acme.com", ALICE_PASSWORD),
            ("bob@acme.com", BOB_PASSWORD),
            ("carol@example.com", CAROL_PASSWORD),
        ])
        .await;
    sandbox.wait_ready("acme").await;
    sandbox.wait_ready("globex").await;
    let driver = Driver::start(&chromedriver).await;

    let alice = Person::new(&driver, &chromium, "alice").await;
    story::alice(&sandbox, &alice).await;
    let bob = Person::new(&driver, &chromium, "bob").await;
    story::bob(&sandbox, &bob).await;
    let carol = Person::new(&driver, &chromium, "carol").await;
    story::carol(&sandbox, &carol).await;
    story::alice_logs_out(&sandbox, &alice).await;
    let admin = Person::new(&driver, &chromium, "admin").await;
    story::admin(&sandbox, &admin).await;

    for person in [alice, bob, carol, admin] {
        person.browser.quit().await;
    }
    sandbox.stop().await;
}

// Passwords of the suite's people (test users of a throwaway sandbox).
const ALICE_PASSWORD: &str = "alice-correct-horse-battery";
const BOB_PASSWORD: &str = "bob-correct-horse-battery";
const CAROL_PASSWORD: &str = "carol-correct-horse-battery";
