//! The task pod of one attempt, built purely from the job and the tenant's
//! settings (no I/O): checked, labelled, locked down.
//!
//! Layout (no volume shared with the instance): an `emptyDir` named `work`;
//! init container `fetch` (the instance image) downloads the input files
//! from the instance's API into it; init container `task` (the user's
//! image) runs the script there, to completion; container `upload` (the
//! instance image) uploads the output files, then exits. Init containers
//! run one after the other and a failed one stops the pod, so the upload
//! runs only after a successful script, and the `task` container's exit
//! code is the script's. (Native sidecars would not help: nothing here runs
//! beside the script.)

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, Pod, PodSecurityContext, PodSpec,
    ResourceRequirements, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::glob;
use crate::config::TaskSettings;
use crate::runner::ScriptJob;
use crate::task_files;

/// The label every task pod carries, for the NetworkPolicy and for
/// finding orphans.
pub const TASK_POD_LABEL: &str = "atoll.dev/task-pod";
/// Who manages task pods.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Its value.
pub const MANAGED_BY: &str = "atoll-instance";
/// The instance pod that created a task pod (orphans are the task pods of
/// instance pods that are gone).
pub const INSTANCE_LABEL: &str = "atoll.dev/instance";
/// The label selector of this instance's task pods.
pub const SELECTOR: &str = "atoll.dev/task-pod=true,app.kubernetes.io/managed-by=atoll-instance";

/// The init container running the script.
pub const TASK_CONTAINER: &str = "task";
/// The init container fetching the inputs.
pub const FETCH_CONTAINER: &str = "fetch";
/// The container uploading the outputs.
pub const UPLOAD_CONTAINER: &str = "upload";
/// Where the working directory is mounted in every container.
pub const WORK_DIR: &str = "/work";
/// The unprivileged user every container runs as.
pub const RUN_AS_USER: i64 = 65532;

/// The image the task runs: the job's, else the tenant's default, checked
/// against the allow-list (before anything is created).
pub fn image(job: &ScriptJob, settings: &TaskSettings) -> Result<String, String> {
    let image = if job.image.is_empty() {
        settings.image.clone().ok_or_else(|| {
            format!(
                "task `{}` names no containerImage and the tenant sets no default task image",
                job.task_id
            )
        })?
    } else {
        job.image.clone()
    };
    if !settings.allowed_images.is_empty()
        && !settings
            .allowed_images
            .iter()
            .any(|p| glob::image_matches(p, &image))
    {
        return Err(format!(
            "image `{image}` of task `{}` is not allowed in this tenant (allowed: {})",
            job.task_id,
            settings.allowed_images.join(", ")
        ));
    }
    Ok(image)
}

/// A pod name for the attempt: DNS-safe, at most 63 characters, ending
/// with `suffix` (random per attempt, so a re-run never meets a pod still
/// being deleted).
pub fn pod_name(job: &ScriptJob, suffix: &str) -> String {
    let task = dns_part(&job.task_id, 30);
    let task = if task.is_empty() { "task".into() } else { task };
    let suffix = dns_part(suffix, 16);
    format!("atoll-{task}-{}-{suffix}", job.attempt.clamp(0, 9999))
}

/// Lowercase letters, digits and single dashes, trimmed, at most `max`.
fn dns_part(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if !(c == '-' && (out.is_empty() || out.ends_with('-'))) {
            out.push(c);
        }
        if out.len() >= max {
            break;
        }
    }
    out.trim_end_matches('-').to_owned()
}

/// A label value: at most 63 of `[A-Za-z0-9-_.]`, starting and ending
/// alphanumeric.
pub fn label_value(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// What a task pod is built from.
#[derive(Debug, Clone, Copy)]
pub struct PodInput<'a> {
    pub job: &'a ScriptJob,
    pub settings: &'a TaskSettings,
    /// The pod's name, also the attempt's key in the file-transfer routes.
    pub name: &'a str,
    /// The attempt's file-transfer token (helpers' env only).
    pub token: &'a str,
    /// The instance process (its pod's name) running the attempt.
    pub instance: &'a str,
}

/// The task pod; refused when the image is not allowed or the instance's
/// image, API URL or the job's interpreter is missing.
pub fn build(input: PodInput<'_>) -> Result<Pod, String> {
    let PodInput {
        job,
        settings,
        name,
        token,
        instance,
    } = input;
    let image = image(job, settings)?;
    let helper_image = settings.instance_image.clone().ok_or_else(|| {
        format!(
            "the Kubernetes task runner needs the instance's image ({} is not set)",
            atoll_crds::contract::INSTANCE_IMAGE
        )
    })?;
    let api_url = settings.api_url.as_deref().ok_or_else(|| {
        format!(
            "the Kubernetes task runner needs the instance's API URL ({} is not set)",
            atoll_crds::contract::TASK_API_URL
        )
    })?;
    if job.interpreter.is_empty() {
        return Err(format!("task `{}` has no interpreter", job.task_id));
    }
    let files_url = format!(
        "{}/api/v1/task-attempts/{name}",
        api_url.trim_end_matches('/')
    );
    let helper_env = vec![
        env(task_files::URL_ENV, &files_url),
        env(task_files::TOKEN_ENV, token),
    ];
    let fetch = helper(FETCH_CONTAINER, &helper_image, fetch_args(), &helper_env);
    let upload = helper(
        UPLOAD_CONTAINER,
        &helper_image,
        upload_args(&job.output_files),
        &helper_env,
    );
    let task = task_container(job, settings, image);
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: settings.namespace.clone(),
            labels: Some(labels(job, instance)),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            init_containers: Some(vec![fetch, task]),
            containers: vec![upload],
            restart_policy: Some("Never".into()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            active_deadline_seconds: job.timeout.or(settings.timeout).map(whole_seconds),
            termination_grace_period_seconds: Some(5),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS_USER),
                run_as_group: Some(RUN_AS_USER),
                fs_group: Some(RUN_AS_USER),
                seccomp_profile: Some(runtime_default()),
                ..PodSecurityContext::default()
            }),
            volumes: Some(vec![Volume {
                name: "work".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        }),
        status: None,
    })
}

/// The user's container: the script run by its interpreter in the working
/// directory, with only the task's declared env.
fn task_container(job: &ScriptJob, settings: &TaskSettings, image: String) -> Container {
    let mut command = job.interpreter.clone();
    command.push(job.script.clone());
    Container {
        name: TASK_CONTAINER.into(),
        image: Some(image),
        command: Some(command),
        working_dir: Some(WORK_DIR.into()),
        env: Some(job.env.iter().map(|(k, v)| env(k, v)).collect()),
        resources: Some(resources(if job.resources.is_empty() {
            &settings.resources
        } else {
            &job.resources
        })),
        ..locked_down()
    }
}

/// A deadline in whole seconds, rounded up (never shorter than asked).
fn whole_seconds(limit: std::time::Duration) -> i64 {
    let seconds = limit.as_secs() + u64::from(limit.subsec_nanos() > 0);
    i64::try_from(seconds.max(1)).unwrap_or(i64::MAX)
}

fn labels(job: &ScriptJob, instance: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (INSTANCE_LABEL.into(), label_value(instance)),
        (MANAGED_BY_LABEL.into(), MANAGED_BY.into()),
        (TASK_POD_LABEL.into(), "true".into()),
        ("atoll.dev/execution".into(), label_value(&job.execution_id)),
        ("atoll.dev/task-run".into(), label_value(&job.task_run_id)),
        ("atoll.dev/attempt".into(), job.attempt.to_string()),
    ])
}

fn fetch_args() -> Vec<String> {
    ["task-files", "fetch", "--dir", WORK_DIR]
        .map(str::to_owned)
        .to_vec()
}

fn upload_args(patterns: &[String]) -> Vec<String> {
    let mut args: Vec<String> = ["task-files", "upload", "--dir", WORK_DIR]
        .map(str::to_owned)
        .to_vec();
    for pattern in patterns {
        args.push("--pattern".into());
        args.push(pattern.clone());
    }
    args
}

/// A file helper: the instance's binary (the image's entrypoint) with a
/// subcommand, small fixed resources.
fn helper(name: &str, image: &str, args: Vec<String>, env: &[EnvVar]) -> Container {
    let quantities = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.into())),
            ("memory".to_owned(), Quantity(memory.into())),
        ])
    };
    Container {
        name: name.into(),
        image: Some(image.into()),
        args: Some(args),
        env: Some(env.to_vec()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        resources: Some(ResourceRequirements {
            requests: Some(quantities("10m", "32Mi")),
            limits: Some(quantities("500m", "128Mi")),
            ..ResourceRequirements::default()
        }),
        ..locked_down()
    }
}

/// The restricted Pod Security profile, and the working directory.
fn locked_down() -> Container {
    Container {
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS_USER),
            run_as_group: Some(RUN_AS_USER),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: None,
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            seccomp_profile: Some(runtime_default()),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "work".into(),
            mount_path: WORK_DIR.into(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn resources(amounts: &BTreeMap<String, BTreeMap<String, String>>) -> ResourceRequirements {
    let pick = |kind: &str| {
        amounts.get(kind).map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), Quantity(v.clone())))
                .collect()
        })
    };
    ResourceRequirements {
        requests: pick("requests"),
        limits: pick("limits"),
        ..ResourceRequirements::default()
    }
}

#[cfg(test)]
#[path = "pod_tests.rs"]
mod tests;
