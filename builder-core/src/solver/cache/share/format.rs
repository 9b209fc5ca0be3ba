//! The shared cache's documents: the cache config blob and the OCI image manifest that
//! carries it with the layers (see the module documentation of `cache::share` for the
//! shape).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::error::CacheShareError;
use crate::digest::Digest;
use crate::image::{ImageFormat, OCI_MANIFEST};
use crate::layer::Compression;
use crate::solver::cache::entry::CacheEntry;

/// The media type of the cache config blob (rbuild's own; image-spec `manifest.md`
/// "config": a custom media type marks an artifact that is not a runnable image).
pub const CACHE_CONFIG_TYPE: &str = "application/vnd.rbuild.cache.config.v1+json";
/// The manifest's `artifactType` (image-spec 1.1 `manifest.md`, "artifactType").
pub const CACHE_ARTIFACT_TYPE: &str = "application/vnd.rbuild.cache.v1";
/// The version of the config document this build writes and reads.
const CONFIG_VERSION: u32 = 1;

/// The cache config blob: every exported entry, sorted by key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CacheConfig {
    pub schema_version: u32,
    pub entries: Vec<CacheEntry>,
}

/// An image-spec descriptor, as much of it as the cache uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// The cache manifest: an OCI image manifest whose config is the [`CacheConfig`] and
/// whose layers are the entries' layer blobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CacheManifest {
    pub schema_version: u32,
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// The two documents of one export, serialized.
pub(crate) struct Documents {
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    /// The layer blobs named, with their sizes.
    pub layers: Vec<(Digest, u64)>,
}

/// The documents for `entries` (deduplicated and sorted here, so the same entries give
/// the same manifest digest).
pub(crate) fn documents(mut entries: Vec<CacheEntry>) -> Result<Documents, CacheShareError> {
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    entries.dedup_by(|a, b| a.key == b.key);
    let mut layers: Vec<Descriptor> = Vec::new();
    for layer in entries.iter().filter_map(|e| e.layer.as_ref()) {
        let (Some(digest), Some(size)) = (&layer.digest, layer.size) else {
            return Err(CacheShareError::Format {
                reason: format!("the entry of layer {} names no blob", layer.diff_id),
            });
        };
        if layers.iter().any(|l| &l.digest == digest) {
            continue;
        }
        let compression: Compression = layer
            .compression
            .as_deref()
            .unwrap_or_default()
            .parse()
            .map_err(|reason| CacheShareError::Format { reason })?;
        layers.push(Descriptor {
            media_type: ImageFormat::Oci.layer_type(compression).to_string(),
            digest: digest.clone(),
            size,
        });
    }
    let config = serde_json::to_vec(&CacheConfig {
        schema_version: CONFIG_VERSION,
        entries,
    })
    .map_err(|source| CacheShareError::Json {
        what: "cache config".to_owned(),
        source,
    })?;
    let manifest = CacheManifest {
        schema_version: 2,
        media_type: OCI_MANIFEST.to_owned(),
        artifact_type: Some(CACHE_ARTIFACT_TYPE.to_owned()),
        config: Descriptor {
            media_type: CACHE_CONFIG_TYPE.to_owned(),
            digest: Digest::of(&config).to_string(),
            size: config.len() as u64,
        },
        layers: layers.clone(),
    };
    let manifest = serde_json::to_vec(&manifest).map_err(|source| CacheShareError::Json {
        what: "cache manifest".to_owned(),
        source,
    })?;
    let layers = layers
        .into_iter()
        .map(|l| Ok((l.digest.parse::<Digest>()?, l.size)))
        .collect::<Result<_, CacheShareError>>()?;
    Ok(Documents {
        config,
        manifest,
        layers,
    })
}

/// A cache manifest read back: its config descriptor, checked to be a cache's.
pub(crate) fn parse_manifest(bytes: &[u8]) -> Result<CacheManifest, CacheShareError> {
    let manifest: CacheManifest =
        serde_json::from_slice(bytes).map_err(|source| CacheShareError::Json {
            what: "cache manifest".to_owned(),
            source,
        })?;
    if manifest.config.media_type != CACHE_CONFIG_TYPE {
        return Err(CacheShareError::Format {
            reason: format!(
                "not an rbuild build cache: its config is {:?}, not {CACHE_CONFIG_TYPE:?}",
                manifest.config.media_type
            ),
        });
    }
    Ok(manifest)
}

/// The entries of a config blob, by key, keeping only those whose layer the manifest
/// lists (with the size it gives).
pub(crate) fn parse_config(
    bytes: &[u8],
    manifest: &CacheManifest,
) -> Result<HashMap<String, CacheEntry>, CacheShareError> {
    let config: CacheConfig =
        serde_json::from_slice(bytes).map_err(|source| CacheShareError::Json {
            what: "cache config".to_owned(),
            source,
        })?;
    if config.schema_version != CONFIG_VERSION {
        return Err(CacheShareError::Format {
            reason: format!(
                "cache config version {} is not {CONFIG_VERSION}",
                config.schema_version
            ),
        });
    }
    let sizes: BTreeMap<&str, u64> = manifest
        .layers
        .iter()
        .map(|l| (l.digest.as_str(), l.size))
        .collect();
    Ok(config
        .entries
        .into_iter()
        .filter(|e| {
            e.layer.as_ref().is_none_or(|l| match (&l.digest, l.size) {
                (Some(digest), Some(size)) => sizes.get(digest.as_str()) == Some(&size),
                // An entry of a layer without a blob is of no use from a shared cache.
                _ => false,
            })
        })
        .map(|e| (e.key.clone(), e))
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::solver::cache::entry::CachedLayer;

    fn entry(key: &str, layer: Option<&str>) -> CacheEntry {
        CacheEntry {
            key: key.into(),
            parent: "sha256:p".into(),
            created_by: "RUN x".into(),
            created: Some("2026-01-01T00:00:00Z".into()),
            layer: layer.map(|d| CachedLayer {
                digest: Some(d.into()),
                diff_id: d.into(),
                size: Some(3),
                compression: Some("gzip".into()),
                chain_id: None,
            }),
            sources: BTreeMap::new(),
            sources_list: None,
            args: BTreeMap::new(),
            from: None,
        }
    }

    #[test]
    fn documents_are_stable_and_read_back() {
        let l1 = Digest::of(b"1").to_string();
        let a = vec![
            entry("k2", Some(&l1)),
            entry("k1", None),
            entry("k3", Some(&l1)),
        ];
        let mut b = a.clone();
        b.reverse();
        let da = documents(a).unwrap();
        let db = documents(b).unwrap();
        assert_eq!(da.manifest, db.manifest, "order of entries does not matter");
        assert_eq!(
            da.layers.len(),
            1,
            "a layer shared by two entries is listed once"
        );
        let manifest = parse_manifest(&da.manifest).unwrap();
        assert_eq!(manifest.artifact_type.as_deref(), Some(CACHE_ARTIFACT_TYPE));
        assert_eq!(
            manifest.layers[0].media_type,
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        let entries = parse_config(&da.config, &manifest).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries["k2"].layer.as_ref().unwrap().digest, Some(l1));
    }

    #[test]
    fn an_image_manifest_is_not_a_cache() {
        let image = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:00","size":1},"layers":[]}"#;
        let err = parse_manifest(image).unwrap_err();
        assert!(
            err.to_string().contains("not an rbuild build cache"),
            "{err}"
        );
    }

    #[test]
    fn entries_whose_layer_the_manifest_does_not_list_are_dropped() {
        let l1 = Digest::of(b"1").to_string();
        let docs = documents(vec![entry("k1", Some(&l1))]).unwrap();
        let mut manifest = parse_manifest(&docs.manifest).unwrap();
        manifest.layers.clear();
        assert!(parse_config(&docs.config, &manifest).unwrap().is_empty());
    }
}
