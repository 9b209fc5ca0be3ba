//! A shared cache in a registry (`type=registry,ref=...`).

use std::collections::HashMap;

use super::error::CacheShareError;
use super::format::{self, Documents};
use crate::digest::Digest;
use crate::image::OCI_MANIFEST;
use crate::progress::{NullProgress, Progress};
use crate::registry::{
    BlobReport, PushOptions, RegistryClient, RegistryConfig, RegistryError, fetch_blob,
    fetch_manifest, push_manifest,
};
use crate::solver::cache::entry::CacheEntry;
use crate::store::{ContentStore, ImageName};

/// An imported registry cache: where its blobs are fetched from.
#[derive(Debug)]
pub(super) struct RemoteCache {
    client: RegistryClient,
    name: ImageName,
    scope: Vec<String>,
}

fn failed(action: &'static str, name: &ImageName) -> impl FnOnce(RegistryError) -> CacheShareError {
    let location = name.to_string();
    move |source| CacheShareError::Registry {
        action,
        location,
        source: Box::new(source),
    }
}

/// The tag, else the digest, that names the cache manifest.
fn reference(name: &ImageName) -> String {
    match (name.tag(), name.digest()) {
        (Some(t), _) => t.to_owned(),
        (None, Some(d)) => d.to_string(),
        (None, None) => super::DEFAULT_LOCAL_TAG.to_owned(),
    }
}

impl RemoteCache {
    /// Fetches the manifest and config of the cache `name`; returns its entries.
    pub(super) fn open(
        store: &ContentStore,
        name: &ImageName,
        registry: &RegistryConfig,
    ) -> Result<(Self, HashMap<String, CacheEntry>), CacheShareError> {
        let fail = || failed("import", name);
        let client = RegistryClient::new(name.registry(), registry.options()).map_err(fail())?;
        let repository = name.repository();
        let scope = vec![format!("repository:{repository}:pull")];
        let fetched =
            fetch_manifest(&client, repository, &reference(name), &scope).map_err(fail())?;
        let manifest = format::parse_manifest(&fetched.bytes)?;
        let config: Digest = manifest.config.digest.parse()?;
        fetch_blob(
            &client,
            store,
            repository,
            &scope,
            (&config, manifest.config.size),
            quiet(),
        )
        .map_err(fail())?;
        let bytes = store.read(&config)?;
        let entries = format::parse_config(&bytes, &manifest)?;
        let cache = RemoteCache {
            client,
            name: name.clone(),
            scope,
        };
        Ok((cache, entries))
    }

    /// Fetches layer blob `digest` into `store` (verified on the way in).
    pub(super) fn fetch(
        &self,
        store: &ContentStore,
        digest: &Digest,
        size: u64,
    ) -> Result<(), CacheShareError> {
        fetch_blob(
            &self.client,
            store,
            self.name.repository(),
            &self.scope,
            (digest, size),
            quiet(),
        )
        .map_err(failed("import", &self.name))
    }
}

/// Cache blobs fetched during steps are not reported: a step's events are its own.
fn quiet() -> BlobReport<'static> {
    BlobReport {
        progress: &NullProgress,
        target: "",
    }
}

/// Pushes `documents` (their layers are in `store`) and tags the manifest at `name`,
/// reporting the blobs' transfers to `progress`.
pub(super) fn export(
    store: &ContentStore,
    documents: &Documents,
    name: &ImageName,
    registry: &RegistryConfig,
    progress: &dyn Progress,
) -> Result<(), CacheShareError> {
    let fail = || failed("export", name);
    // The pusher reads every blob from the store: the layers are there already.
    store.put(&documents.config)?;
    let manifest = store.put(&documents.manifest)?;
    let client = RegistryClient::new(name.registry(), registry.options()).map_err(fail())?;
    push_manifest(
        &client,
        store,
        &manifest.digest,
        OCI_MANIFEST,
        name,
        &PushOptions::default(),
        progress,
    )
    .map_err(fail())
}
