//! Basic auth against a docker-registry with htpasswd, credentials from `config.json`.
#![allow(clippy::unwrap_used)]

mod support;

use rbuild_core::{
    ContentStore, ImageName,
    image::ImageFormat,
    registry::{
        DockerConfig, PushOptions, RegistryClient, RegistryCredentials, RegistryError,
        RegistryOptions, pull, push,
    },
};
use support::images::make_image;
use support::registry::{Registry, htpasswd_line};

/// One test in this binary, so that setting DOCKER_CONFIG races with nothing.
#[test]
fn basic_auth_uses_docker_config_and_fails_clearly_without() {
    let reg = Registry::start(Some(&htpasswd_line("tester", "s3cret")));
    let tmp = tempfile::tempdir().unwrap();
    let config_dir = tmp.path().join("docker");
    // SAFETY: this binary runs this single test, so no other thread reads the environment.
    unsafe { std::env::set_var(rbuild_core::registry::DOCKER_CONFIG_ENV, &config_dir) };
    assert_eq!(DockerConfig::default_path(), config_dir.join("config.json"));

    let store = ContentStore::open(tmp.path().join("store")).unwrap();
    make_image(&store, "local/auth:1", "auth", ImageFormat::Oci, "amd64");
    let dest: ImageName = format!("{}/auth/img:1", reg.addr).parse().unwrap();

    // No config.json: anonymous, refused with a message that says what is missing.
    let anonymous = RegistryClient::new(&reg.addr, RegistryOptions::default()).unwrap();
    let err = push(
        &anonymous,
        &store,
        "local/auth:1",
        &dest,
        &PushOptions::default(),
        &rbuild_core::progress::NullProgress,
    )
    .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("rbuild login"), "{err}");

    // A wrong password is refused as such.
    let mut config = DockerConfig::load().unwrap();
    let wrong = RegistryCredentials {
        username: "tester".into(),
        password: "nope".into(),
    };
    config.store_credentials(&reg.addr, &wrong).unwrap();
    let client = RegistryClient::new(&reg.addr, RegistryOptions::default()).unwrap();
    let err = client.ping(&[]).unwrap_err();
    assert!(err.to_string().contains("credentials refused"), "{err}");

    // The right password, written to config.json the way `docker login` does.
    let right = RegistryCredentials {
        username: "tester".into(),
        password: "s3cret".into(),
    };
    config.store_credentials(&reg.addr, &right).unwrap();
    let text = std::fs::read_to_string(config_dir.join("config.json")).unwrap();
    assert!(text.contains("\"auth\""), "{text}");
    let client = RegistryClient::new(&reg.addr, RegistryOptions::default()).unwrap();
    client.ping(&[]).unwrap();
    let digest = push(
        &client,
        &store,
        "local/auth:1",
        &dest,
        &PushOptions::default(),
        &rbuild_core::progress::NullProgress,
    )
    .unwrap_or_else(|e| panic!("push failed: {e:?}\n{}", reg.log()));

    let fresh = ContentStore::open(tmp.path().join("fresh")).unwrap();
    let desc = pull(
        &client,
        &fresh,
        &dest,
        rbuild_core::registry::PullPlatform::Host,
        &rbuild_core::progress::NullProgress,
    )
    .unwrap();
    assert_eq!(desc.digest().to_string(), digest.to_string());

    // After logout the registry refuses again.
    assert!(config.remove_credentials(&reg.addr).unwrap());
    let client = RegistryClient::new(&reg.addr, RegistryOptions::default()).unwrap();
    let fresh2 = ContentStore::open(tmp.path().join("fresh2")).unwrap();
    let err = pull(
        &client,
        &fresh2,
        &dest,
        rbuild_core::registry::PullPlatform::Host,
        &rbuild_core::progress::NullProgress,
    )
    .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");

    // credsStore: `docker-credential-<name> get` answers with the server URL on stdin.
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-rbtest");
    let log = tmp.path().join("helper.log");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\necho \"$1 $server\" >> {}\n[ \"$1\" = get ] && printf '{{\"ServerURL\":\"%s\",\"Username\":\"tester\",\"Secret\":\"s3cret\"}}' \"$server\"\nexit 0\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(config_dir.join("config.json"), r#"{"credsStore":"rbtest"}"#).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // SAFETY: as above, the only test of this binary.
    unsafe { std::env::set_var("PATH", path) };
    let client = RegistryClient::new(&reg.addr, RegistryOptions::default()).unwrap();
    let fresh3 = ContentStore::open(tmp.path().join("fresh3")).unwrap();
    pull(
        &client,
        &fresh3,
        &dest,
        rbuild_core::registry::PullPlatform::Host,
        &rbuild_core::progress::NullProgress,
    )
    .unwrap();
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(calls.trim(), format!("get {}", reg.addr));
}
