//! Start-up and the running service: open the database, create the first
//! admin, load the signing keys, serve, and keep keys rotated.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::audit::AuditLog;
use crate::config::{Config, Secret};
use crate::keys::{self, KeyError, KeyRing};
use crate::passwords::{PasswordError, Passwords};
use crate::sessions;
use crate::store::{Store, StoreError, User};

/// How often keys are reloaded from the database (picking up keys another
/// replica created) and rotated when due.
pub const KEY_MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("opening the database failed")]
    Store(#[from] StoreError),
    #[error("setting up password hashing failed")]
    Passwords(#[from] PasswordError),
    #[error("loading the signing keys failed")]
    Keys(#[from] KeyError),
    #[error("loading the cluster credentials failed")]
    Clusters(#[from] crate::clusters::ClusterTokensError),
    #[error(
        "no user exists and {} is not set: set it (or {}_FILE) to create the first admin",
        crate::config::ADMIN_PASSWORD,
        crate::config::ADMIN_PASSWORD
    )]
    NoAdminPassword,
    #[error("the first admin's password is too weak: {0}")]
    WeakAdminPassword(#[from] crate::passwords::WeakPassword),
    #[error("generating the first admin's password failed")]
    Random(#[from] sessions::RandomError),
    #[error("listening on {addr} failed")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving HTTP failed")]
    Serve(#[source] std::io::Error),
}

/// How the first admin came to be, for the start-up message.
#[derive(Debug, Clone)]
pub enum FirstAdmin {
    /// Created now with the configured password.
    Configured { email: String },
    /// Created now with a generated password, to be shown once.
    Generated { email: String, password: Secret },
}

/// Whether `open` may generate the first admin's password (only when
/// someone can read it: `main` passes true on an interactive terminal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminPasswordPolicy {
    RequireConfigured,
    GenerateIfMissing,
}

#[derive(Debug)]
pub struct Identity {
    config: Config,
    store: Store,
    keys: Arc<KeyRing>,
    state: AppState,
    audit_writer: tokio::task::JoinHandle<()>,
    first_admin: Option<FirstAdmin>,
}

fn unix_now() -> i64 {
    i64::try_from(crate::verify::unix_now()).unwrap_or(i64::MAX)
}

impl Identity {
    pub async fn open(
        config: Config,
        admin_policy: AdminPasswordPolicy,
    ) -> Result<Identity, StartError> {
        let store = Store::open(&config.database_url, config.db_max_connections).await?;
        let passwords = Passwords::new(config.argon2, config.hashing_concurrency).await?;
        let first_admin = create_first_admin(&config, &store, &passwords, admin_policy).await?;
        let encryption = config
            .key_encryption_key
            .as_ref()
            .map(|k| keys::KeyEncryption::from_base64(k.expose()))
            .transpose()?;
        match &encryption {
            Some(encryption) => seal_stored_keys(&store, encryption).await?,
            None => tracing::warn!(
                "no key-encryption key is configured ({}_FILE or {}): signing keys are stored \
                 UNENCRYPTED in the database, and anyone who can read it can sign tokens for \
                 every tenant; configure one (the chart does)",
                crate::config::KEY_ENCRYPTION_KEY,
                crate::config::KEY_ENCRYPTION_KEY
            ),
        }
        let clusters = crate::clusters::ClusterCredentials::from_config(&config)?;
        if clusters.clusters().is_empty() {
            tracing::warn!(
                "no cluster credential is configured ({} or {}): the tenant directory API refuses every request",
                crate::config::CLUSTER_TOKENS_DIR,
                crate::config::SERVICE_TOKEN
            );
        }
        let keys = Arc::new(KeyRing::new(config.keys, Vec::new())?.with_encryption(encryption));
        maintain_keys(&store, &keys, unix_now()).await?;
        let (audit, audit_writer) = AuditLog::start(store.clone());
        let state = AppState::new(
            config.clone(),
            store.clone(),
            keys.clone(),
            passwords,
            audit,
            clusters,
        );
        Ok(Identity {
            config,
            store,
            keys,
            state,
            audit_writer,
            first_admin,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.keys
    }

    /// Set when `open` created the first admin.
    pub fn first_admin(&self) -> Option<&FirstAdmin> {
        self.first_admin.as_ref()
    }

    pub fn app(&self) -> Router {
        api::app(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` completes, rotating keys in
    /// the background; then drains the audit log and closes the database.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let app = self.app();
        let self_limits = self.config.login_limits;
        let Identity {
            store,
            keys,
            state,
            audit_writer,
            ..
        } = self;
        let maintenance = tokio::spawn(maintenance_loop(store.clone(), keys, self_limits));
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        maintenance.abort();
        // The router (and with it the last audit sender) is gone once serve
        // returns; the writer finishes what is queued.
        drop(state);
        let _ = audit_writer.await;
        store.close().await;
        served.map_err(StartError::Serve)
    }
}

async fn create_first_admin(
    config: &Config,
    store: &Store,
    passwords: &Passwords,
    policy: AdminPasswordPolicy,
) -> Result<Option<FirstAdmin>, StartError> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let (password, generated) = match (&config.admin_password, policy) {
        (Some(password), _) => {
            crate::passwords::check_new_password(password.expose())?;
            (password.clone(), false)
        }
        (None, AdminPasswordPolicy::GenerateIfMissing) => {
            (Secret::new(sessions::random_token(18)?), true)
        }
        (None, AdminPasswordPolicy::RequireConfigured) => return Err(StartError::NoAdminPassword),
    };
    let hash = passwords.hash(&password).await?;
    let email = config.admin_email.clone();
    let admin = User {
        id: uuid::Uuid::now_v7().to_string(),
        display_name: crate::users::display_name(None, &email),
        email: email.clone(),
        is_admin: true,
        disabled: false,
        created_at: unix_now(),
    };
    // Another replica may have won the race: then it holds the first admin.
    if store.create_user(&admin, &hash).await?.is_none() {
        return Ok(None);
    }
    tracing::info!(email = %email, "created the first platform admin");
    Ok(Some(if generated {
        FirstAdmin::Generated { email, password }
    } else {
        FirstAdmin::Configured { email }
    }))
}

/// Checks that every stored signing key opens with `encryption` (a wrong
/// key-encryption key fails here, before anything is written), then seals
/// the keys stored in the clear (from before a key-encryption key was
/// configured).
pub async fn seal_stored_keys(
    store: &Store,
    encryption: &keys::KeyEncryption,
) -> Result<(), StartError> {
    let stored = store.signing_keys().await?;
    let opened = stored
        .iter()
        .cloned()
        .map(|record| keys::open_from_storage(record, Some(encryption)))
        .collect::<Result<Vec<_>, _>>()?;
    for (before, plain) in stored.iter().zip(&opened) {
        if keys::is_sealed(before) {
            continue;
        }
        let sealed = keys::seal_for_storage(plain, Some(encryption))?;
        if store
            .replace_private_key(&before.kid, &before.private_pkcs8, &sealed.private_pkcs8)
            .await?
        {
            tracing::info!(kid = %before.kid, "sealed a signing key stored in the clear");
        }
    }
    Ok(())
}

/// Reloads keys from the database, creates a successor when one is due,
/// deletes keys whose tokens have all expired, and swaps the result into
/// `ring`. Safe to run on every replica at once.
pub async fn maintain_keys(store: &Store, ring: &KeyRing, now: i64) -> Result<(), StartError> {
    let policy = *ring.policy();
    let mut records = store.signing_keys().await?;
    // Every stored key must open before anything is written.
    for record in &records {
        keys::open_from_storage(record.clone(), ring.encryption())?;
    }
    if let Some(not_before) = keys::successor_due(&records, now, &policy) {
        let key = keys::generate(now, not_before)?;
        let stored = keys::seal_for_storage(&key, ring.encryption())?;
        if store.insert_signing_key(&stored).await? {
            tracing::info!(kid = %key.kid, not_before, "published a new signing key");
        }
        records = store.signing_keys().await?;
    }
    let expired: Vec<String> = keys::expired(&records, now, &policy)
        .into_iter()
        .map(str::to_owned)
        .collect();
    for kid in &expired {
        store.delete_signing_key(kid).await?;
        tracing::info!(%kid, "removed a signing key whose tokens have all expired");
    }
    records.retain(|k| !expired.contains(&k.kid));
    let records = records
        .into_iter()
        .map(|stored| keys::open_from_storage(stored, ring.encryption()))
        .collect::<Result<Vec<_>, _>>()?;
    ring.replace(records)?;
    Ok(())
}

async fn maintenance_loop(store: Store, keys: Arc<KeyRing>, limits: crate::config::LoginLimits) {
    let mut ticker = tokio::time::interval(KEY_MAINTENANCE_INTERVAL);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let now = unix_now();
        if let Err(error) = maintain_keys(&store, &keys, now).await {
            tracing::error!(error = %error_chain(&error), "key maintenance failed; retrying next minute");
        }
        if let Err(error) = store.delete_expired_credentials(now).await {
            tracing::warn!(error = %error_chain(&error), "purging expired sessions failed");
        }
        if let Err(error) = store.delete_expired_auth_codes(now).await {
            tracing::warn!(error = %error_chain(&error), "purging expired authorization codes failed");
        }
        // Rate-limit windows and lockouts that ended.
        let longest = i64::try_from(limits.lockout.as_secs().max(60)).unwrap_or(i64::MAX);
        if let Err(error) = store.purge_throttle(now, longest).await {
            tracing::warn!(error = %error_chain(&error), "purging rate-limit counters failed");
        }
    }
}

/// An error and its sources, one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

/// Binds `config.listen`.
pub async fn bind(config: &Config) -> Result<TcpListener, StartError> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })
}
