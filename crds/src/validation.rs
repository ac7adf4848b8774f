//! Pure validation of a Tenant: the same rules as the CRD's schema and CEL
//! rules, so that the operator can refuse a bad spec even on an API server
//! that does not run them (or when a Tenant reached it before a CRD upgrade).

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use crate::quantity::{QUANTITY_PATTERN, Quantity};
use crate::tasks::*;
use crate::tenant::*;

/// One problem with a Tenant, and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the offending field, as `kubectl explain` spells it
    /// (`spec.members[1].user`).
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

struct Patterns {
    name: Regex,
    email: Regex,
    host: Regex,
    env_name: Regex,
    object_name: Regex,
    data_key: Regex,
    image: Regex,
    version: Regex,
    quantity: Regex,
    task_image: Regex,
    image_glob: Regex,
    duration: Regex,
    s3_endpoint: Regex,
    bucket: Regex,
    region: Regex,
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    let compile = |p: &str| Regex::new(p).unwrap_or_else(|e| panic!("pattern {p}: {e}"));
    Patterns {
        name: compile(NAME_PATTERN),
        email: compile(EMAIL_PATTERN),
        host: compile(HOST_PATTERN),
        env_name: compile(ENV_NAME_PATTERN),
        object_name: compile(OBJECT_NAME_PATTERN),
        data_key: compile(DATA_KEY_PATTERN),
        image: compile(IMAGE_PATTERN),
        version: compile(VERSION_PATTERN),
        quantity: compile(QUANTITY_PATTERN),
        task_image: compile(TASK_IMAGE_PATTERN),
        image_glob: compile(IMAGE_GLOB_PATTERN),
        duration: compile(DURATION_PATTERN),
        s3_endpoint: compile(S3_ENDPOINT_PATTERN),
        bucket: compile(BUCKET_PATTERN),
        region: compile(REGION_PATTERN),
    }
});

/// Collects every problem rather than stopping at the first, so one round
/// trip shows a person all they have to fix.
#[derive(Default)]
pub(crate) struct Errors(Vec<FieldError>);

impl Errors {
    /// `Ok` when nothing was found, else every problem.
    pub(crate) fn into_result(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }

    pub(crate) fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub(crate) fn pattern(&mut self, field: &str, value: &str, re: &Regex, what: &str) {
        if !re.is_match(value) {
            self.push(field, format!("{value:?} is not {what}"));
        }
    }

    pub(crate) fn length(&mut self, field: &str, value: &str, min: usize, max: usize) {
        let len = value.chars().count();
        if len < min {
            self.push(field, format!("must be at least {min} characters"));
        } else if len > max {
            self.push(
                field,
                format!("must be at most {max} characters (has {len})"),
            );
        }
    }

    fn range(&mut self, field: &str, value: i64, min: i64, max: i64) {
        if value < min || value > max {
            self.push(
                field,
                format!("must be between {min} and {max} (is {value})"),
            );
        }
    }

    pub(crate) fn object_name(&mut self, field: &str, value: &str) {
        self.length(field, value, 1, 253);
        self.pattern(
            field,
            value,
            &PATTERNS.object_name,
            "a valid object name (lower-case letters, digits, '-' and '.')",
        );
    }

    fn data_key(&mut self, field: &str, value: &str) {
        self.length(field, value, 1, 253);
        self.pattern(
            field,
            value,
            &PATTERNS.data_key,
            "a valid key (letters, digits, '-', '_' and '.')",
        );
    }

    /// Checks the quantity's form and returns its amount when well formed.
    fn quantity(&mut self, field: &str, value: &Quantity) -> Option<f64> {
        if PATTERNS.quantity.is_match(value.as_str()) {
            value.to_f64()
        } else {
            self.push(
                field,
                format!(
                    "{:?} is not a non-negative quantity such as 500m, 2 or 1Gi",
                    value.as_str()
                ),
            );
            None
        }
    }

    fn resources(&mut self, field: &str, resources: &ComputeResources) {
        let requests = &resources.requests;
        let limits = &resources.limits;
        for (kind, request, limit) in [
            ("cpu", &requests.cpu, &limits.cpu),
            ("memory", &requests.memory, &limits.memory),
        ] {
            let request = request
                .as_ref()
                .and_then(|q| self.quantity(&format!("{field}.requests.{kind}"), q));
            let limit = limit
                .as_ref()
                .and_then(|q| self.quantity(&format!("{field}.limits.{kind}"), q));
            if let (Some(request), Some(limit)) = (request, limit)
                && limit < request
            {
                self.push(
                    format!("{field}.limits.{kind}"),
                    format!("limits.{kind} must be at least requests.{kind}"),
                );
            }
        }
    }
}

/// Reads a Tenant from JSON, naming the field whose type or value does not fit
/// (an unknown enum value, a string where a number belongs).
pub fn from_value(value: serde_json::Value) -> Result<Tenant, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let field = error.path().to_string();
        FieldError {
            field: if field == "." {
                "(root)".to_owned()
            } else {
                field
            },
            message: error.into_inner().to_string(),
        }
    })
}

/// Checks a Tenant against every rule of the CRD. Returns all problems found.
pub fn validate(tenant: &Tenant) -> Result<(), Vec<FieldError>> {
    let mut errors = Errors::default();
    validate_name(&mut errors, tenant.metadata.name.as_deref());
    validate_spec(&mut errors, &tenant.spec);
    errors.into_result()
}

fn validate_name(errors: &mut Errors, name: Option<&str>) {
    let Some(name) = name else {
        errors.push("metadata.name", "is required");
        return;
    };
    if name.len() > MAX_NAME_LEN {
        errors.push(
            "metadata.name",
            format!(
                "must be at most {MAX_NAME_LEN} characters, so that the namespace atoll-<name> and the host <name>.<baseDomain> stay valid DNS labels (has {})",
                name.len()
            ),
        );
    }
    if RESERVED_NAMES.contains(&name) {
        errors.push(
            "metadata.name",
            format!(
                "{name:?} is reserved for the platform (reserved: {}): its namespace or host would be the platform's own",
                RESERVED_NAMES.join(", ")
            ),
        );
    }
    if !PATTERNS.name.is_match(name) {
        errors.push(
            "metadata.name",
            format!(
                "{name:?} is not a DNS label: lower-case letters, digits and '-', starting with a letter and ending with a letter or digit"
            ),
        );
    }
}

fn validate_spec(errors: &mut Errors, spec: &TenantSpec) {
    if let Some(display_name) = &spec.display_name {
        errors.length("spec.displayName", display_name, 1, 128);
    }
    validate_instance(errors, &spec.instance);
    let database_storage = validate_database(errors, &spec.database);
    validate_ingress(errors, &spec.ingress);
    let quota_storage = validate_quota(errors, &spec.quota);
    if let (Some(size), Some(quota)) = (database_storage, quota_storage)
        && size > quota
    {
        errors.push(
            "spec.database.dedicated.storage.size",
            "must not exceed spec.quota.storage: the volume would be refused by the namespace quota",
        );
    }
    validate_members(errors, &spec.members);
    validate_tasks(errors, &spec.tasks);
    let storage = validate_storage(errors, &spec.storage);
    if spec.instance.replicas > 1 && spec.storage.s3.is_none() {
        errors.push(
            "spec.storage.s3",
            "spec.instance.replicas above 1 needs spec.storage.s3: the internal storage volume is ReadWriteOnce and cannot be shared by replicas on different nodes",
        );
    }
    // The database volume: none for External, the default size when the
    // Dedicated database sets none.
    let database_volume = match (&spec.database.mode, &spec.database.dedicated) {
        (DatabaseMode::External, _) => Some(0.0),
        (DatabaseMode::Dedicated, Some(_)) => database_storage,
        (DatabaseMode::Dedicated, None) => StorageSpec::default().size.to_f64(),
    };
    if let (Some(size), Some(database), Some(quota)) = (storage, database_volume, quota_storage)
        && size + database > quota
    {
        errors.push(
            "spec.storage.size",
            "spec.storage.size plus the database volume must not exceed spec.quota.storage: the storage volume would be refused by the namespace quota",
        );
    }
    validate_secrets(errors, &spec.secrets);
    crate::backup_validation::validate_backup_and_restore(errors, spec);
    if let Some(idle) = &spec.idle
        && let Err(message) = idle.after_seconds()
    {
        errors.push("spec.idle.after", message);
    }
}

fn validate_tasks(errors: &mut Errors, tasks: &TasksSpec) {
    if let Some(image) = &tasks.image {
        errors.length("spec.tasks.image", image, 1, 255);
        errors.pattern(
            "spec.tasks.image",
            image,
            &PATTERNS.task_image,
            "an image reference (registry/repository:tag, optionally @sha256:digest)",
        );
    }
    errors.resources("spec.tasks.resources", &tasks.resources);
    errors.range(
        "spec.tasks.maxConcurrentPods",
        tasks.max_concurrent_pods.into(),
        1,
        1000,
    );
    if tasks.allowed_images.len() > MAX_ALLOWED_IMAGES {
        errors.push(
            "spec.tasks.allowedImages",
            format!(
                "must have at most {MAX_ALLOWED_IMAGES} items (has {})",
                tasks.allowed_images.len()
            ),
        );
    }
    let mut seen = HashSet::new();
    for (i, pattern) in tasks.allowed_images.iter().enumerate() {
        let field = format!("spec.tasks.allowedImages[{i}]");
        errors.length(&field, pattern, 1, 255);
        errors.pattern(
            &field,
            pattern,
            &PATTERNS.image_glob,
            "an image pattern (image characters and '*')",
        );
        if !seen.insert(pattern.as_str()) {
            errors.push(&field, format!("{pattern:?} is listed twice"));
        }
    }
    errors.length("spec.tasks.timeout", &tasks.timeout, 3, 32);
    errors.pattern(
        "spec.tasks.timeout",
        &tasks.timeout,
        &PATTERNS.duration,
        "an ISO-8601 duration of hours, minutes and seconds such as PT1H or PT30M",
    );
    if !tasks.timeout.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        errors.push(
            "spec.tasks.timeout",
            "spec.tasks.timeout must be longer than zero",
        );
    }
}

/// Returns the volume size when a volume is used and well formed.
fn validate_storage(errors: &mut Errors, storage: &InstanceStorageSpec) -> Option<f64> {
    if let Some(class) = &storage.storage_class_name {
        errors.object_name("spec.storage.storageClassName", class);
    }
    let size = errors.quantity("spec.storage.size", &storage.size);
    let Some(s3) = &storage.s3 else {
        return size;
    };
    errors.length("spec.storage.s3.endpoint", &s3.endpoint, 8, 2048);
    errors.pattern(
        "spec.storage.s3.endpoint",
        &s3.endpoint,
        &PATTERNS.s3_endpoint,
        "an http(s) URL",
    );
    errors.pattern(
        "spec.storage.s3.bucket",
        &s3.bucket,
        &PATTERNS.bucket,
        "a bucket name (3-63 lower-case letters, digits, '.' and '-')",
    );
    if let Some(region) = &s3.region {
        errors.length("spec.storage.s3.region", region, 1, 64);
        errors.pattern(
            "spec.storage.s3.region",
            region,
            &PATTERNS.region,
            "a region such as us-east-1",
        );
    }
    errors.object_name(
        "spec.storage.s3.credentialsSecretRef.name",
        &s3.credentials_secret_ref.name,
    );
    None
}

fn validate_secrets(errors: &mut Errors, secrets: &[LocalSecretRef]) {
    if secrets.len() > MAX_SECRETS {
        errors.push(
            "spec.secrets",
            format!(
                "must have at most {MAX_SECRETS} items (has {})",
                secrets.len()
            ),
        );
    }
    let mut seen = HashSet::new();
    for (i, secret) in secrets.iter().enumerate() {
        let field = format!("spec.secrets[{i}].name");
        errors.object_name(&field, &secret.name);
        if !seen.insert(secret.name.as_str()) {
            errors.push(&field, format!("{:?} is listed twice", secret.name));
        }
    }
}

fn validate_instance(errors: &mut Errors, instance: &InstanceSpec) {
    if let Some(image) = &instance.image {
        errors.length("spec.instance.image", image, 1, 255);
        errors.pattern(
            "spec.instance.image",
            image,
            &PATTERNS.image,
            "an image name without tag (registry/repository, optionally @sha256:digest)",
        );
    }
    if let Some(version) = &instance.version {
        errors.pattern(
            "spec.instance.version",
            version,
            &PATTERNS.version,
            "a valid image tag (letters, digits, '_', '.', '-'; at most 128)",
        );
    }
    errors.range("spec.instance.replicas", instance.replicas.into(), 0, 10);
    errors.resources("spec.instance.resources", &instance.resources);
    validate_env(errors, &instance.env);
    let config = &instance.config;
    errors.range(
        "spec.instance.config.maxConcurrentTaskRuns",
        config.max_concurrent_task_runs.into(),
        1,
        1024,
    );
    if let Some(days) = config.execution_retention_days {
        errors.range(
            "spec.instance.config.executionRetentionDays",
            days.into(),
            1,
            3650,
        );
    }
}

fn validate_env(errors: &mut Errors, env: &[EnvVar]) {
    if env.len() > MAX_ENV {
        errors.push(
            "spec.instance.env",
            format!("must have at most {MAX_ENV} items (has {})", env.len()),
        );
    }
    let mut seen = HashSet::new();
    for (i, var) in env.iter().enumerate() {
        let field = format!("spec.instance.env[{i}]");
        let name_field = format!("{field}.name");
        errors.length(&name_field, &var.name, 1, 128);
        errors.pattern(
            &name_field,
            &var.name,
            &PATTERNS.env_name,
            "a valid environment variable name (letters, digits and '_', not starting with a digit)",
        );
        if var.name.starts_with(RESERVED_ENV_PREFIX) {
            errors.push(
                &name_field,
                "environment variable names starting with ATOLL_ are reserved for the operator",
            );
        }
        if !seen.insert(var.name.as_str()) {
            errors.push(&name_field, format!("{:?} is listed twice", var.name));
        }
        if let Some(value) = &var.value
            && value.len() > 32768
        {
            errors.push(format!("{field}.value"), "must be at most 32768 characters");
        }
        if var.value.is_some() && var.value_from.is_some() {
            errors.push(&field, "set either value or valueFrom, not both");
        }
        if let Some(source) = &var.value_from {
            let source_field = format!("{field}.valueFrom");
            match (&source.secret_key_ref, &source.config_map_key_ref) {
                (Some(r), None) => key_ref(errors, &format!("{source_field}.secretKeyRef"), r),
                (None, Some(r)) => key_ref(errors, &format!("{source_field}.configMapKeyRef"), r),
                _ => errors.push(
                    source_field,
                    "valueFrom needs exactly one of secretKeyRef or configMapKeyRef",
                ),
            }
        }
    }
}

fn key_ref(errors: &mut Errors, field: &str, r: &KeyRef) {
    errors.object_name(&format!("{field}.name"), &r.name);
    errors.data_key(&format!("{field}.key"), &r.key);
}

/// Returns the dedicated volume size when it is well formed.
fn validate_database(errors: &mut Errors, database: &DatabaseSpec) -> Option<f64> {
    match database.mode {
        DatabaseMode::External if database.external.is_none() => errors.push(
            "spec.database.external",
            "spec.database.external is required when mode is External",
        ),
        DatabaseMode::Dedicated if database.external.is_some() => errors.push(
            "spec.database.external",
            "spec.database.external must not be set when mode is Dedicated",
        ),
        DatabaseMode::External if database.dedicated.is_some() => errors.push(
            "spec.database.dedicated",
            "spec.database.dedicated must not be set when mode is External",
        ),
        _ => {}
    }
    if let Some(external) = &database.external {
        let field = "spec.database.external.adminSecretRef";
        errors.object_name(&format!("{field}.name"), &external.admin_secret_ref.name);
        errors.data_key(&format!("{field}.key"), &external.admin_secret_ref.key);
    }
    let dedicated = database.dedicated.as_ref()?;
    if let Some(image) = &dedicated.image {
        errors.length("spec.database.dedicated.image", image, 1, 255);
    }
    if let Some(class) = &dedicated.storage.storage_class_name {
        errors.object_name("spec.database.dedicated.storage.storageClassName", class);
    }
    errors.resources("spec.database.dedicated.resources", &dedicated.resources);
    errors.quantity(
        "spec.database.dedicated.storage.size",
        &dedicated.storage.size,
    )
}

fn validate_ingress(errors: &mut Errors, ingress: &IngressSpec) {
    if let Some(host) = &ingress.host {
        errors.length("spec.ingress.host", host, 1, 253);
        errors.pattern(
            "spec.ingress.host",
            host,
            &PATTERNS.host,
            "a lower-case DNS name without wildcards",
        );
    }
    if let Some(class) = &ingress.class_name {
        errors.object_name("spec.ingress.className", class);
    }
    if let Some(tls) = &ingress.tls {
        if tls.secret_name.is_none() && tls.cluster_issuer.is_none() {
            errors.push(
                "spec.ingress.tls",
                "spec.ingress.tls needs secretName, clusterIssuer or both",
            );
        }
        if let Some(secret) = &tls.secret_name {
            errors.object_name("spec.ingress.tls.secretName", secret);
        }
        if let Some(issuer) = &tls.cluster_issuer {
            errors.object_name("spec.ingress.tls.clusterIssuer", issuer);
        }
    }
}

/// Returns the storage quota when it is well formed.
fn validate_quota(errors: &mut Errors, quota: &QuotaSpec) -> Option<f64> {
    errors.quantity("spec.quota.cpu", &quota.cpu);
    errors.quantity("spec.quota.memory", &quota.memory);
    errors.range("spec.quota.pods", quota.pods.into(), 1, 1000);
    errors.quantity("spec.quota.storage", &quota.storage)
}

fn validate_members(errors: &mut Errors, members: &[Member]) {
    if members.len() > MAX_MEMBERS {
        errors.push(
            "spec.members",
            format!(
                "must have at most {MAX_MEMBERS} items (has {})",
                members.len()
            ),
        );
    }
    let mut seen = HashSet::new();
    for (i, member) in members.iter().enumerate() {
        let field = format!("spec.members[{i}].user");
        errors.length(&field, &member.user, 3, 254);
        errors.pattern(
            &field,
            &member.user,
            &PATTERNS.email,
            "a lower-case e-mail address",
        );
        if !seen.insert(member.user.to_lowercase()) {
            errors.push(
                field,
                format!(
                    "spec.members must not name the same user twice ({:?})",
                    member.user
                ),
            );
        }
    }
}
