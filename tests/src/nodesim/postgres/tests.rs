use super::*;

#[test]
fn reads_the_official_images_variables_and_redacts_the_password() {
    let env = vec![
        ("POSTGRES_USER".to_owned(), "atoll".to_owned()),
        ("POSTGRES_PASSWORD".to_owned(), "hunter2".to_owned()),
    ];
    let init = PostgresInit::from_env("/pg".into(), "/data".into(), &env, None);
    assert_eq!(init.user, "atoll");
    assert_eq!(init.database, "atoll");
    assert_eq!(init.host_auth_method, "scram-sha-256");
    assert!(!format!("{init:?}").contains("hunter2"));

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("password");
    std::fs::write(&file, "from-file\n").expect("write");
    let env = vec![(
        "POSTGRES_PASSWORD_FILE".to_owned(),
        file.to_string_lossy().into_owned(),
    )];
    let init = PostgresInit::from_env("/pg".into(), "/data".into(), &env, None);
    assert_eq!(init.password.as_deref(), Some("from-file"));
    assert_eq!(init.user, "postgres");
    let args = init.server_args(
        std::net::Ipv4Addr::new(127, 64, 1, 2),
        5432,
        &[
            "postgres".to_owned(),
            "-c".to_owned(),
            "max_connections=20".to_owned(),
        ],
    );
    assert_eq!(
        args.join(" "),
        "-D /data -c listen_addresses=127.64.1.2 -p 5432 -c unix_socket_directories= -c fsync=off -c max_connections=20"
    );
}

#[test]
fn the_socket_goes_into_the_given_directory_quoted_when_needed() {
    let ip = std::net::Ipv4Addr::new(127, 64, 1, 2);
    let init = PostgresInit::from_env("/pg".into(), "/data".into(), &[], None);
    let with = |dir: &str| {
        init.clone()
            .with_socket_dir(Some(dir.into()))
            .server_args(ip, 5432, &[])
    };
    assert!(
        with("/pods/u/volumes/run")
            .contains(&"unix_socket_directories=/pods/u/volumes/run".to_owned())
    );
    assert!(with("/a dir/run").contains(&"unix_socket_directories=\"/a dir/run\"".to_owned()));
    assert!(with("/a,\"b").contains(&"unix_socket_directories=\"/a,\"\"b\"".to_owned()));
}
