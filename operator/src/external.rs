//! External database mode: a database and a role of the tenant's own on a
//! shared PostgreSQL server, created idempotently with the admin URL from a
//! Secret in the operator's namespace.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Row};

use crate::build::DatabaseCredentials;

/// Why the tenant's database could not be provisioned. Messages never carry
/// the admin URL or any password.
#[derive(Debug, thiserror::Error)]
pub enum ExternalError {
    /// The Secret's value is not a PostgreSQL URL.
    #[error("the admin secret does not hold a valid postgres:// URL")]
    BadAdminUrl,
    /// The shared server could not be reached or refused the admin login.
    #[error("connecting to the shared server {server}: {reason}")]
    Connect {
        /// host:port.
        server: String,
        /// What failed.
        reason: String,
    },
    /// A statement failed.
    #[error("{action} on the shared server {server}: {reason}")]
    Statement {
        /// What we were doing.
        action: &'static str,
        /// host:port.
        server: String,
        /// What failed.
        reason: String,
    },
}

/// The role and database name for a tenant: `atoll_<name>` with `-` → `_`.
pub fn database_identifier(tenant: &str) -> String {
    format!("atoll_{}", tenant.replace('-', "_"))
}

/// A PostgreSQL identifier, quoted.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A PostgreSQL string literal, quoted.
fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// sqlx errors can echo connection details; keep only their kind.
fn reason(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => db.code().map_or_else(
            || "database error".to_owned(),
            |code| format!("database error {code}"),
        ),
        sqlx::Error::Io(io) => io.kind().to_string(),
        sqlx::Error::Tls(_) => "TLS error".to_owned(),
        sqlx::Error::PoolTimedOut => "timed out".to_owned(),
        _ => "request failed".to_owned(),
    }
}

/// Runs one DDL statement built from quoted identifiers and literals.
async fn run(connection: &mut sqlx::PgConnection, statement: String) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(&mut *connection)
        .await
        .map(|_| ())
}

/// An admin connection to the shared server, and where it goes (for
/// messages: host and port only).
struct Admin {
    connection: sqlx::PgConnection,
    server: String,
    host: String,
    port: u16,
}

impl Admin {
    async fn connect(admin_url: &str) -> Result<Admin, ExternalError> {
        let options =
            PgConnectOptions::from_str(admin_url.trim()).map_err(|_| ExternalError::BadAdminUrl)?;
        let server = format!("{}:{}", options.get_host(), options.get_port());
        let (host, port) = (options.get_host().to_owned(), options.get_port());
        let connection = options
            .disable_statement_logging()
            .connect()
            .await
            .map_err(|e| ExternalError::Connect {
                server: server.clone(),
                reason: reason(&e),
            })?;
        Ok(Admin {
            connection,
            server,
            host,
            port,
        })
    }

    /// What `action` failing with `error` is reported as.
    fn failed(&self, action: &'static str, error: &sqlx::Error) -> ExternalError {
        ExternalError::Statement {
            action,
            server: self.server.clone(),
            reason: reason(error),
        }
    }

    /// Runs one DDL statement built from quoted identifiers and literals.
    async fn run(&mut self, action: &'static str, statement: String) -> Result<(), ExternalError> {
        match run(&mut self.connection, statement).await {
            Ok(()) => Ok(()),
            Err(error) => Err(self.failed(action, &error)),
        }
    }

    async fn close(self) {
        let _ = self.connection.close().await;
    }
}

/// Creates (or updates the password of) the tenant's role and creates its
/// database, owned by the role, closed to other roles. Returns the
/// credentials the instance connects with.
pub async fn provision(
    admin_url: &str,
    tenant: &str,
    password: &str,
) -> Result<DatabaseCredentials, ExternalError> {
    let mut admin = Admin::connect(admin_url).await?;
    let name = database_identifier(tenant);
    let role = quote_identifier(&name);
    ensure_role(&mut admin, &name, password).await?;
    revoke_memberships(&mut admin, &name).await?;
    ensure_database(&mut admin, &name).await?;
    // Other tenants' roles on the same server cannot even connect.
    admin
        .run(
            "closing the tenant's database to other roles",
            format!("REVOKE ALL ON DATABASE {role} FROM PUBLIC"),
        )
        .await?;
    let (host, port) = (admin.host.clone(), admin.port);
    admin.close().await;

    Ok(DatabaseCredentials {
        username: name.clone(),
        password: password.to_owned(),
        database: name,
        host,
        port,
    })
}

/// Creates the tenant's role, or brings an existing one to the attributes
/// and password it should have.
///
/// The role owns its database and nothing more: every attribute that
/// reaches beyond it is off, whatever an earlier version or a hand set.
/// Demoting a superuser, replication or bypassrls role needs a superuser
/// admin; naming those attributes when already off does not (managed
/// servers' admins are not superusers).
async fn ensure_role(admin: &mut Admin, name: &str, password: &str) -> Result<(), ExternalError> {
    let role = quote_identifier(name);
    let existing = sqlx::query(
        "SELECT rolsuper, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = $1",
    )
    .bind(name)
    .fetch_optional(&mut admin.connection)
    .await;
    let existing = existing.map_err(|e| admin.failed("looking up the tenant's role", &e))?;
    // Passwords cannot be bound as parameters in DDL; ours are generated
    // alphanumerics, and quoting keeps even a hand-set one inert.
    let literal = quote_literal(password);
    let statement = match existing {
        None => format!(
            "CREATE ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE \
             NOREPLICATION NOBYPASSRLS INHERIT PASSWORD {literal}"
        ),
        Some(row) => {
            let mut demote = String::new();
            for (column, attribute) in [
                ("rolsuper", " NOSUPERUSER"),
                ("rolreplication", " NOREPLICATION"),
                ("rolbypassrls", " NOBYPASSRLS"),
            ] {
                if row.try_get::<bool, _>(column).unwrap_or(true) {
                    demote.push_str(attribute);
                }
            }
            format!(
                "ALTER ROLE {role} WITH LOGIN NOCREATEDB NOCREATEROLE INHERIT{demote} \
                 PASSWORD {literal}"
            )
        }
    };
    admin.run("creating the tenant's role", statement).await
}

/// The tenant's role is a member of no other role (predefined ones such
/// as pg_read_server_files included).
async fn revoke_memberships(admin: &mut Admin, name: &str) -> Result<(), ExternalError> {
    let role = quote_identifier(name);
    let memberships: Result<Vec<String>, _> = sqlx::query_scalar(
        "SELECT r.rolname::text FROM pg_auth_members m \
         JOIN pg_roles r ON r.oid = m.roleid \
         JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = $1",
    )
    .bind(name)
    .fetch_all(&mut admin.connection)
    .await;
    let memberships =
        memberships.map_err(|e| admin.failed("looking up the tenant role's memberships", &e))?;
    for granted in memberships {
        admin
            .run(
                "revoking the tenant role's memberships",
                format!("REVOKE {} FROM {role}", quote_identifier(&granted)),
            )
            .await?;
    }
    Ok(())
}

/// Creates the tenant's database, or gives an existing one to its role.
async fn ensure_database(admin: &mut Admin, name: &str) -> Result<(), ExternalError> {
    let role = quote_identifier(name);
    let owner: Result<Option<String>, _> = sqlx::query_scalar(
        "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
    )
    .bind(name)
    .fetch_optional(&mut admin.connection)
    .await;
    let owner = owner.map_err(|e| admin.failed("looking up the tenant's database", &e))?;
    match owner {
        None => {
            admin
                .run(
                    "creating the tenant's database",
                    format!("CREATE DATABASE {role} OWNER {role}"),
                )
                .await
        }
        Some(owner) if owner != name => {
            admin
                .run(
                    "giving the tenant's database to its role",
                    format!("ALTER DATABASE {role} OWNER TO {role}"),
                )
                .await
        }
        Some(_) => Ok(()),
    }
}

/// Drops the tenant's database and role (deletionPolicy Delete).
pub async fn drop_database(admin_url: &str, tenant: &str) -> Result<(), ExternalError> {
    let mut admin = Admin::connect(admin_url).await?;
    let role = quote_identifier(&database_identifier(tenant));
    admin
        .run(
            "dropping the tenant's database",
            format!("DROP DATABASE IF EXISTS {role} WITH (FORCE)"),
        )
        .await?;
    admin
        .run(
            "dropping the tenant's role",
            format!("DROP ROLE IF EXISTS {role}"),
        )
        .await?;
    admin.close().await;
    Ok(())
}

/// Whether a role may log in to a database (used by tests and diagnostics).
pub async fn can_connect(credentials: &DatabaseCredentials) -> bool {
    let Ok(options) = PgConnectOptions::from_str(&credentials.url()) else {
        return false;
    };
    match options.disable_statement_logging().connect().await {
        Ok(mut connection) => {
            let ok = sqlx::query("SELECT 1")
                .fetch_one(&mut connection)
                .await
                .map(|row| row.get::<i32, _>(0) == 1)
                .unwrap_or(false);
            let _ = connection.close().await;
            ok
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(database_identifier("acme-corp"), "atoll_acme_corp");
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[tokio::test]
    async fn a_bad_admin_url_is_named_without_echoing_it() {
        let error = provision("not a url with secret-password", "acme", "pw")
            .await
            .expect_err("refused");
        assert_eq!(
            error.to_string(),
            "the admin secret does not hold a valid postgres:// URL"
        );
    }
}
