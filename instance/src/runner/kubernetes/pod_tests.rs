use std::time::Duration;

use super::*;

fn job() -> ScriptJob {
    ScriptJob {
        namespace: "company.team".into(),
        flow_id: "etl".into(),
        execution_id: "5wGDm2xPq1rS7nT".into(),
        task_id: "Run_The Script".into(),
        task_run_id: "3kLp9QzR".into(),
        attempt: 2,
        image: "python:3.12-slim".into(),
        interpreter: vec!["python3".into(), "-c".into()],
        script: "print('hi')".into(),
        env: BTreeMap::from([("GREETING".into(), "hello".into())]),
        output_files: vec!["*.csv".into()],
        ..ScriptJob::default()
    }
}

fn settings() -> TaskSettings {
    TaskSettings {
        namespace: Some("atoll-acme".into()),
        instance_image: Some("ghcr.io/atoll/instance:1.0".into()),
        api_url: Some("http://instance.atoll-acme.svc:8080/".into()),
        max_pods: 4,
        allowed_images: vec!["python:*".into(), "alpine:*".into()],
        resources: BTreeMap::from([(
            "limits".into(),
            BTreeMap::from([("memory".into(), "256Mi".into())]),
        )]),
        timeout: Some(Duration::from_secs(600)),
        ..TaskSettings::default()
    }
}

fn built(job: &ScriptJob, settings: &TaskSettings) -> Pod {
    build(PodInput {
        job,
        settings,
        name: "atoll-run-the-script-2-abc",
        token: "T0KEN",
        instance: "atoll-instance-7d9f-abcde",
    })
    .expect("pod")
}

fn all_containers(pod: &Pod) -> Vec<Container> {
    let spec = pod.spec.clone().expect("spec");
    let mut all = spec.init_containers.unwrap_or_default();
    all.extend(spec.containers);
    all
}

#[test]
fn every_container_is_restricted_and_no_token_is_mounted() {
    let pod = built(&job(), &settings());
    let spec = pod.spec.clone().expect("spec");
    assert_eq!(spec.automount_service_account_token, Some(false));
    assert_eq!(spec.enable_service_links, Some(false));
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(spec.active_deadline_seconds, Some(600));
    let pod_security = spec.security_context.expect("pod security");
    assert_eq!(pod_security.run_as_non_root, Some(true));
    let containers = all_containers(&pod);
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["fetch", "task", "upload"]);
    for c in &containers {
        let sc = c.security_context.clone().expect("security context");
        assert_eq!(sc.run_as_non_root, Some(true), "{}", c.name);
        assert_eq!(sc.run_as_user, Some(RUN_AS_USER), "{}", c.name);
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
        let caps = sc.capabilities.expect("capabilities");
        assert_eq!(caps.drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(caps.add, None);
        assert_eq!(
            sc.seccomp_profile.map(|p| p.type_).as_deref(),
            Some("RuntimeDefault")
        );
    }
    assert!(
        spec.volumes
            .expect("volumes")
            .iter()
            .all(|v| v.empty_dir.is_some())
    );
}

#[test]
fn the_task_gets_only_its_declared_env_and_the_helpers_get_the_token() {
    let pod = built(&job(), &settings());
    let containers = all_containers(&pod);
    let task = &containers[1];
    let env: Vec<(String, Option<String>)> = task
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect();
    assert_eq!(env, [("GREETING".to_owned(), Some("hello".to_owned()))]);
    assert!(task.env_from.is_none());
    assert_eq!(task.image.as_deref(), Some("python:3.12-slim"));
    assert_eq!(
        task.command.clone().expect("command"),
        ["python3", "-c", "print('hi')"]
    );
    assert_eq!(task.working_dir.as_deref(), Some(WORK_DIR));
    let limits = task
        .resources
        .clone()
        .and_then(|r| r.limits)
        .expect("limits");
    assert_eq!(limits["memory"].0, "256Mi");
    for helper in [&containers[0], &containers[2]] {
        let env = helper.env.clone().unwrap_or_default();
        let get = |n: &str| {
            env.iter()
                .find(|e| e.name == n)
                .and_then(|e| e.value.clone())
        };
        assert_eq!(get(task_files::TOKEN_ENV).as_deref(), Some("T0KEN"));
        assert_eq!(
            get(task_files::URL_ENV).as_deref(),
            Some(
                "http://instance.atoll-acme.svc:8080/api/v1/task-attempts/atoll-run-the-script-2-abc"
            )
        );
        assert_eq!(helper.image.as_deref(), Some("ghcr.io/atoll/instance:1.0"));
    }
    assert_eq!(
        containers[2].args.clone().expect("args"),
        [
            "task-files",
            "upload",
            "--dir",
            "/work",
            "--pattern",
            "*.csv"
        ]
    );
    let text = serde_json::to_string(task).expect("json");
    assert!(!text.contains("T0KEN"), "{text}");
}

#[test]
fn labels_and_name_identify_the_attempt() {
    let job = job();
    let name = pod_name(&job, "x7k2p");
    assert_eq!(name, "atoll-run-the-script-2-x7k2p");
    let long = ScriptJob {
        task_id: "a".repeat(200),
        attempt: 123_456,
        ..job.clone()
    };
    let long_name = pod_name(&long, "abcdefghijklmnopqrstuvwxyz");
    assert!(long_name.len() <= 63, "{long_name}");
    assert!(
        long_name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    );
    let pod = built(&job, &settings());
    let labels = pod.metadata.labels.expect("labels");
    assert_eq!(labels[MANAGED_BY_LABEL], "atoll-instance");
    assert_eq!(labels[TASK_POD_LABEL], "true");
    assert_eq!(labels["atoll.dev/execution"], "5wGDm2xPq1rS7nT");
    assert_eq!(labels["atoll.dev/task-run"], "3kLp9QzR");
    assert_eq!(labels["atoll.dev/attempt"], "2");
    assert_eq!(labels[INSTANCE_LABEL], "atoll-instance-7d9f-abcde");
    assert_eq!(pod.metadata.namespace.as_deref(), Some("atoll-acme"));
    assert_eq!(label_value("-a/b c-"), "a-b-c");
    assert_eq!(label_value(&"x".repeat(80)).len(), 63);
}

#[test]
fn images_outside_the_allow_list_are_refused_before_anything() {
    let settings = settings();
    let evil = ScriptJob {
        image: "evil.example/miner:latest".into(),
        ..job()
    };
    let err = build(PodInput {
        job: &evil,
        settings: &settings,
        name: "n",
        token: "t",
        instance: "i",
    })
    .expect_err("refused");
    assert!(err.contains("evil.example/miner:latest"), "{err}");
    assert!(err.contains("not allowed"), "{err}");
    // No image on the task: the tenant's default, itself checked.
    let unnamed = ScriptJob {
        image: String::new(),
        ..job()
    };
    assert!(image(&unnamed, &settings).is_err());
    let with_default = TaskSettings {
        image: Some("alpine:3.20".into()),
        ..settings.clone()
    };
    assert_eq!(image(&unnamed, &with_default).as_deref(), Ok("alpine:3.20"));
    // An empty allow-list allows any image.
    let open = TaskSettings {
        allowed_images: Vec::new(),
        ..settings
    };
    assert!(image(&evil, &open).is_ok());
}

#[test]
fn the_job_timeout_and_resources_win_over_the_defaults() {
    let job = ScriptJob {
        timeout: Some(Duration::from_millis(1500)),
        resources: BTreeMap::from([(
            "requests".into(),
            BTreeMap::from([("cpu".into(), "250m".into())]),
        )]),
        ..job()
    };
    let pod = built(&job, &settings());
    let spec = pod.spec.clone().expect("spec");
    assert_eq!(spec.active_deadline_seconds, Some(2));
    let task = &all_containers(&pod)[1];
    let resources = task.resources.clone().expect("resources");
    assert_eq!(resources.requests.expect("requests")["cpu"].0, "250m");
    assert!(resources.limits.is_none());
}
