//! Docker Hub mirrors: a `docker.io` pull is served by the first mirror that has the image,
//! without contacting Docker Hub; two local docker-registries stand in for the mirrors.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::TcpListener;

use rbuild_core::{
    ContentStore, ImageName,
    image::ImageFormat,
    registry::{
        CONFIG_ENV, DOCKER_CONFIG_ENV, PullPlatform, PushOptions, RegistryClient, RegistryConfig,
        RegistryError, RegistryOptions, pull_with_mirrors, push,
    },
};
use support::images::make_image;
use support::registry::Registry;

/// A 127.0.0.1 port nothing listens on: bound, read, released.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn docker_hub_pull_falls_back_from_a_down_mirror_to_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let down = format!("127.0.0.1:{}", closed_port());
    let mirror = Registry::start(None);

    // The mirror holds docker.io/library/busybox:latest under the same repository path.
    let src = ContentStore::open(tmp.path().join("src")).unwrap();
    let image = make_image(&src, "local/busybox:1", "mirror", ImageFormat::Oci, "amd64");
    let on_mirror: ImageName = format!("{}/library/busybox:latest", mirror.addr)
        .parse()
        .unwrap();
    let client = RegistryClient::with_credentials(&mirror.addr, None, Default::default());
    push(
        &client,
        &src,
        "local/busybox:1",
        &on_mirror,
        &PushOptions::default(),
        &rbuild_core::progress::NullProgress,
    )
    .unwrap_or_else(|e| panic!("push to the mirror failed: {e:?}\n{}", mirror.log()));

    // The config file lists the down mirror first; no docker credentials are used.
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "registry-mirrors = [\"http://{down}\", \"http://{}/\"]\n",
            mirror.addr
        ),
    )
    .unwrap();
    let docker_config = tmp.path().join("docker");
    std::fs::create_dir(&docker_config).unwrap();
    // SAFETY: this test binary has a single test, so no other thread reads the environment.
    unsafe {
        std::env::set_var(CONFIG_ENV, &config);
        std::env::set_var(DOCKER_CONFIG_ENV, &docker_config);
    }
    let loaded = RegistryConfig::load().unwrap();
    let hosts: Vec<_> = loaded.registry_mirrors.iter().map(|m| m.host()).collect();
    assert_eq!(hosts, [down.as_str(), mirror.addr.as_str()]);

    let options = RegistryOptions::default().with_retries(1);
    let name: ImageName = "busybox".parse().unwrap();
    assert_eq!(name.registry(), "docker.io");
    let origin = RegistryClient::with_credentials(name.registry(), None, options.clone());
    let store = ContentStore::open(tmp.path().join("dst")).unwrap();
    let pulled = pull_with_mirrors(
        &loaded.registry_mirrors,
        &options,
        &origin,
        &store,
        &name,
        PullPlatform::Host,
        &rbuild_core::progress::NullProgress,
    )
    .unwrap_or_else(|e| panic!("pull through the mirrors failed: {e:?}\n{}", mirror.log()));
    // Served by the second mirror, so the origin (docker.io) was never asked.
    assert_eq!(pulled.source, mirror.addr);
    assert_eq!(
        pulled.descriptor.digest().to_string(),
        image.digest().unwrap().to_string()
    );
    assert_eq!(pulled.skipped.len(), 1, "{:?}", pulled.skipped);
    assert_eq!(pulled.skipped[0].0.host(), down);
    assert!(
        matches!(pulled.skipped[0].1, RegistryError::Http { .. }),
        "the down mirror must fail to connect: {:?}",
        pulled.skipped[0].1
    );
    // The image is named as the docker.io name asked for.
    let found = store.resolve("busybox").unwrap();
    assert_eq!(found.descriptor.digest(), pulled.descriptor.digest());

    // A mirror lacking the image is skipped the same way: ask for a tag only the origin
    // could have, with the origin replaced by the down port, so nothing leaves 127.0.0.1.
    let missing: ImageName = "busybox:not-on-the-mirror".parse().unwrap();
    let fake_origin = RegistryClient::with_credentials(&down, None, options.clone());
    let err = pull_with_mirrors(
        &loaded.registry_mirrors,
        &options,
        &fake_origin,
        &store,
        &missing,
        PullPlatform::Host,
        &rbuild_core::progress::NullProgress,
    )
    .unwrap_err();
    let RegistryError::Mirrors { mirrors, source } = &err else {
        panic!("expected every mirror to be named: {err:?}");
    };
    assert!(matches!(**source, RegistryError::Http { .. }), "{err:?}");
    assert!(mirrors.contains(&format!("http://{down}")), "{mirrors}");
    assert!(
        mirrors.contains(&format!("http://{}", mirror.addr)) && mirrors.contains("404"),
        "the mirror lacking the tag must say so: {mirrors}"
    );
}
