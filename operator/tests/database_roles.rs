//! The instance's database role owns its database and nothing more, in both
//! database modes, proven against real PostgreSQL: a Dedicated database is
//! the operator's StatefulSet run by nodesim (the image's init scripts
//! included), an External one a throwaway shared server with two tenants.

use std::str::FromStr;
use std::time::Duration;

use atoll_crds::{Tenant, TenantSpec};
use atoll_operator::build::{
    DatabaseCredentials, TenantContext, database_secret, database_service, database_stateful_set,
    service_account_database,
};
use atoll_operator::config::OperatorConfig;
use atoll_operator::external;
use atoll_testkit::eventually;
use atoll_testkit::kubesim::KubeSim;
use atoll_testkit::nodesim::{NodeSim, NodeSimConfig, workloads::pod_ready};
use atoll_testkit::pg::TestPostgres;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, PostParams};
use kube::{Client, Resource};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, Row};

const LIMIT: Duration = Duration::from_secs(90);

fn tenant(name: &str) -> Tenant {
    let mut tenant = Tenant::new(name, TenantSpec::default());
    tenant.metadata.uid = Some(format!("uid-{name}"));
    tenant
}

/// Creates a child as built, minus the owner reference to a Tenant that
/// this API server does not hold (its garbage collector would take it).
async fn create<K>(client: &Client, namespace: &str, mut object: K)
where
    K: Resource<Scope = NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    object.meta_mut().owner_references = None;
    Api::<K>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &object)
        .await
        .expect("created");
}

async fn connect(url: &str) -> Result<PgConnection, sqlx::Error> {
    PgConnectOptions::from_str(url)?
        .disable_statement_logging()
        .connect()
        .await
}

/// The SQLSTATE a statement fails with, or None when it succeeds.
async fn sqlstate(connection: &mut PgConnection, sql: &'static str) -> Option<String> {
    match sqlx::raw_sql(sql).execute(&mut *connection).await {
        Ok(_) => None,
        Err(sqlx::Error::Database(e)) => Some(e.code().map(|c| c.into_owned()).unwrap_or_default()),
        Err(e) => Some(format!("not a database error: {e}")),
    }
}

const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// What the instance's role may and may not do on its own connection.
async fn assert_owns_its_database_and_nothing_more(connection: &mut PgConnection) {
    let row = sqlx::query(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls \
         FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut *connection)
    .await
    .expect("own role");
    for (i, attribute) in [
        "superuser",
        "createrole",
        "createdb",
        "replication",
        "bypassrls",
    ]
    .iter()
    .enumerate()
    {
        assert!(
            !row.get::<bool, _>(i),
            "the instance's role has {attribute}"
        );
    }
    for statement in [
        "CREATE ROLE intruder",
        "CREATE DATABASE other",
        "ALTER SYSTEM SET work_mem = '8MB'",
        "COPY (SELECT 1) TO PROGRAM 'true'",
        "CREATE TEMP TABLE t (v text); COPY t FROM PROGRAM 'id'",
        "SELECT pg_read_file('postgresql.conf')",
    ] {
        assert_eq!(
            sqlstate(connection, statement).await.as_deref(),
            Some(INSUFFICIENT_PRIVILEGE),
            "{statement}"
        );
    }
    // Its own database is its own.
    assert_eq!(
        sqlstate(
            connection,
            "CREATE TABLE flows (id bigserial PRIMARY KEY, v text); \
             INSERT INTO flows (v) VALUES ('x'); DROP TABLE flows"
        )
        .await,
        None
    );
    let owner: String = sqlx::query_scalar(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()",
    )
    .fetch_one(&mut *connection)
    .await
    .expect("owner");
    let me: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut *connection)
        .await
        .expect("current user");
    assert_eq!(owner, me);
}

fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn a_dedicated_database_gives_the_instance_a_role_that_owns_its_database_only() {
    let sim = KubeSim::builder().build();
    let client = sim.client();
    let config = OperatorConfig::default();
    let tenant = tenant("acme");
    let ctx = TenantContext::new(&tenant, &config).expect("context");
    let namespace = ctx.namespace.clone();
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}}))
            .expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
    let state = tempfile::tempdir().expect("tempdir");
    let node = NodeSim::start(
        client.clone(),
        NodeSimConfig::new(state.path().join("node")).postgres(),
    )
    .await
    .expect("nodesim starts");

    let password = format!(
        "Pw{}x{}",
        std::process::id(),
        state.path().display().to_string().len()
    );
    let credentials = DatabaseCredentials::dedicated(&ctx, password.clone());
    create(&client, &namespace, service_account_database(&ctx)).await;
    create(&client, &namespace, database_secret(&ctx, &credentials)).await;
    create(
        &client,
        &namespace,
        atoll_operator::build::database_init_config_map(&ctx),
    )
    .await;
    create(&client, &namespace, database_service(&ctx)).await;
    create(&client, &namespace, database_stateful_set(&ctx)).await;

    let pods = Api::<Pod>::namespaced(client.clone(), &namespace);
    eventually("database-0 to be ready", LIMIT, || async {
        let pod = pods.get("database-0").await.ok()?;
        pod_ready(&pod).then_some(())
    })
    .await;

    // The instance's URL, as the instance gets it.
    let url = node.resolve(&credentials.url());
    let mut connection = connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "the instance's role logs in: {e:?}; {:?}",
            node.logs(&namespace, "database-0", None)
        )
    });
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut connection)
        .await
        .expect("current user");
    assert_eq!(user, "atoll");
    assert_owns_its_database_and_nothing_more(&mut connection).await;
    let _ = connection.close().await;

    // The superuser cannot be reached from the network with the instance's
    // password (it has none: the pod's Unix socket only).
    let admin = node.resolve(&format!(
        "postgres://postgres:{password}@{}:{}/atoll",
        credentials.host, credentials.port
    ));
    assert!(
        connect(&admin).await.is_err(),
        "postgres logs in with the instance's password"
    );

    for file in files(&node.logs_dir()) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(!text.contains(&password), "password in {}", file.display());
    }
    node.shutdown().await;
}

#[tokio::test]
async fn external_tenants_roles_are_unprivileged_and_cannot_enter_each_others_databases() {
    let server = TestPostgres::start();
    // A role left superuser by hand (or an earlier version) is demoted.
    server.psql(
        "postgres",
        "CREATE ROLE atoll_beta SUPERUSER CREATEDB CREATEROLE LOGIN",
    );
    let alpha = external::provision(&server.url, "alpha", "alpha-password")
        .await
        .expect("alpha provisioned");
    let beta = external::provision(&server.url, "beta", "beta-password")
        .await
        .expect("beta provisioned");
    // The instance is given the password itself, not its SQL literal.
    assert_eq!(alpha.password, "alpha-password");
    // Provisioning again changes nothing.
    external::provision(&server.url, "alpha", "alpha-password")
        .await
        .expect("alpha provisioned again");

    for credentials in [&alpha, &beta] {
        let mut connection = connect(&credentials.url()).await.expect("own database");
        assert_owns_its_database_and_nothing_more(&mut connection).await;
        let _ = connection.close().await;
    }
    // Each role is kept out of the other's database.
    let crossed = |who: &DatabaseCredentials, database: &str| DatabaseCredentials {
        database: database.to_owned(),
        ..who.clone()
    };
    assert!(!external::can_connect(&crossed(&alpha, &beta.database)).await);
    assert!(!external::can_connect(&crossed(&beta, &alpha.database)).await);
    assert!(external::can_connect(&alpha).await && external::can_connect(&beta).await);
    // Of the tenants' databases, each role may enter its own only.
    assert_eq!(
        server.psql(
            "postgres",
            "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database \
             WHERE has_database_privilege('atoll_alpha', datname, 'CONNECT') \
             AND datname LIKE 'atoll_%'"
        ),
        "atoll_alpha"
    );
}

/// A Dedicated database of the earlier layout (the instance's role as the
/// bootstrap superuser, owning tables it created) is brought to the new one
/// by the init container's script, with its data kept. nodesim does not run
/// init containers: the test runs that container's command itself, as the
/// pod would between the two StatefulSets.
#[tokio::test]
async fn the_upgrade_script_demotes_the_instance_role_of_an_earlier_database() {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::{EnvVar, PersistentVolumeClaim};
    use kube::api::DeleteParams;

    let sim = KubeSim::builder().build();
    let client = sim.client();
    let config = OperatorConfig::default();
    let tenant = tenant("old");
    let ctx = TenantContext::new(&tenant, &config).expect("context");
    let namespace = ctx.namespace.clone();
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}}))
            .expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
    let state = tempfile::tempdir().expect("tempdir");
    let node_dir = state.path().join("node");
    let node = NodeSim::start(client.clone(), NodeSimConfig::new(&node_dir).postgres())
        .await
        .expect("nodesim starts");
    let password = "OldLayoutPassword1".to_owned();
    let credentials = DatabaseCredentials::dedicated(&ctx, password.clone());
    create(&client, &namespace, service_account_database(&ctx)).await;
    create(&client, &namespace, database_secret(&ctx, &credentials)).await;
    create(
        &client,
        &namespace,
        atoll_operator::build::database_init_config_map(&ctx),
    )
    .await;
    create(&client, &namespace, database_service(&ctx)).await;

    // The earlier layout: POSTGRES_USER was the instance's role, no scripts.
    let mut old = database_stateful_set(&ctx);
    let pod = old
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .expect("pod spec");
    pod.init_containers = None;
    let container = &mut pod.containers[0];
    container
        .volume_mounts
        .get_or_insert_default()
        .retain(|m| m.name != "initdb");
    for env in container.env.get_or_insert_default() {
        if env.name == "POSTGRES_USER" {
            *env = EnvVar {
                name: "POSTGRES_USER".into(),
                value: Some("atoll".into()),
                ..EnvVar::default()
            };
        }
    }
    create(&client, &namespace, old).await;
    let pods = Api::<Pod>::namespaced(client.clone(), &namespace);
    let ready = || async {
        eventually("database-0 to be ready", LIMIT, || async {
            let pod = pods.get("database-0").await.ok()?;
            pod_ready(&pod).then_some(pod.metadata.uid)
        })
        .await
    };
    let first = ready().await;
    let url = node.resolve(&credentials.url());
    let mut connection = connect(&url).await.expect("old layout: atoll logs in");
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut connection)
            .await
            .expect("rolsuper");
    assert!(superuser, "the earlier layout made the instance superuser");
    sqlx::raw_sql(
        "CREATE TABLE logs (seq bigserial PRIMARY KEY, line text); \
         INSERT INTO logs (line) VALUES ('kept'); \
         CREATE VIEW recent AS SELECT * FROM logs; \
         CREATE FUNCTION answer() RETURNS int LANGUAGE sql AS 'SELECT 42'",
    )
    .execute(&mut connection)
    .await
    .expect("the instance's objects");
    let _ = connection.close().await;

    // The operator's new StatefulSet replaces it; its init container runs
    // the upgrade script on the volume before PostgreSQL starts.
    Api::<StatefulSet>::namespaced(client.clone(), &namespace)
        .delete("database", &DeleteParams::default())
        .await
        .expect("deleted");
    eventually("database-0 to be gone", LIMIT, || async {
        let gone = pods.get_opt("database-0").await.ok()?.is_none();
        (gone && node.pod_pids(&namespace, "database-0").is_empty()).then_some(())
    })
    .await;
    let claim = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &namespace)
        .get("data-database-0")
        .await
        .expect("the volume is kept");
    let pgdata = node_dir
        .join("pvc")
        .join(&namespace)
        .join(claim.metadata.name.expect("name"))
        .join("pgdata");
    let scripts = tempfile::tempdir().expect("scripts dir");
    for (key, text) in atoll_operator::build::database_init_config_map(&ctx)
        .data
        .expect("data")
    {
        std::fs::write(scripts.path().join(key), text).expect("script written");
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(scripts.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let bindir = atoll_testkit::nodesim::postgres::bindir_from_env();
    let mut upgrade = std::process::Command::new("bash");
    upgrade
        .arg(scripts.path().join("upgrade.sh"))
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bindir.display()))
        .env("PGDATA", &pgdata)
        .env("ATOLL_DATABASE_USER", "atoll")
        .env("ATOLL_DATABASE_PASSWORD", &password)
        .env("ATOLL_DATABASE_NAME", "atoll")
        .current_dir("/");
    if let Some((uid, gid)) = atoll_testkit::nodesim::postgres::unprivileged_user() {
        use std::os::unix::process::CommandExt;
        upgrade.uid(uid).gid(gid);
    }
    let out = upgrade.output().expect("upgrade runs");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "upgrade failed: {output}");
    assert!(
        !output.contains(&password),
        "password in the upgrade's output"
    );
    assert!(pgdata.join("atoll-roles-layout").is_file());
    // A second start finds nothing to do.
    let again = upgrade.output().expect("upgrade runs again");
    assert!(again.status.success() && again.stdout.is_empty());

    create(&client, &namespace, database_stateful_set(&ctx)).await;
    let second = ready().await;
    assert_ne!(first, second);
    let mut connection = connect(&url).await.expect("the instance's role logs in");
    assert_owns_its_database_and_nothing_more(&mut connection).await;
    let kept: String = sqlx::query_scalar("SELECT line FROM recent")
        .fetch_one(&mut connection)
        .await
        .expect("its view and table");
    assert_eq!(kept, "kept");
    sqlx::raw_sql(
        "INSERT INTO logs (line) VALUES ('new'); ALTER TABLE logs ADD COLUMN at timestamptz; \
         SELECT answer(); CREATE OR REPLACE VIEW recent AS SELECT * FROM logs",
    )
    .execute(&mut connection)
    .await
    .expect("it still owns what it created");
    let _ = connection.close().await;
    let admin = node.resolve(&format!(
        "postgres://postgres:{password}@{}:{}/atoll",
        credentials.host, credentials.port
    ));
    assert!(
        connect(&admin).await.is_err(),
        "postgres kept the instance's password"
    );
    node.shutdown().await;
}
