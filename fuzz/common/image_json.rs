//! The body of the `image_json` fuzz target, shared with the corpus replay test in
//! `builder-core/tests/fuzz_corpus.rs`. It covers what rbuild reads from
//! image metadata it did not write: manifests, indexes and image configs (parsed directly
//! and through `load_image` on a real content store), image names, and `-o` values.
//!
//! The input is split at NUL bytes into up to three JSON documents, a chain such as
//! index, manifest, config. Each document's `config.digest` and `manifests[].digest` are
//! pointed at the next document once that is stored, so `load_image` follows the chain
//! as it would in a real store instead of stopping at the first unknown digest.

use std::str::FromStr;

use rbuild_core::oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use rbuild_core::{
    ContentStore, Digest, ExportTarget, ImageName,
    image::{ImageConfig, ImageFormat},
};

/// Most documents taken from one input.
const MAX_DOCUMENTS: usize = 3;

/// Most text lines tried as image names and `-o` values.
const MAX_LINES: usize = 16;

/// Runs every parser on `data`; returns normally unless something panics or an image
/// name does not survive printing and parsing again.
pub fn run(data: &[u8]) {
    let _ = serde_json::from_slice::<ImageManifest>(data);
    let _ = serde_json::from_slice::<ImageIndex>(data);
    if let Ok(config) = serde_json::from_slice::<ImageConfig>(data) {
        let _ = serde_json::to_vec(&config);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for line in std::iter::once(text).chain(text.lines().take(MAX_LINES)) {
            names(line);
            let _ = ExportTarget::from_str(line);
            let _ = ImageFormat::from_str(line);
        }
    }
    load_chain(data);
}

/// Parses `text` as an image name; a name that parses must print as a name that parses
/// back to itself.
fn names(text: &str) {
    let Ok(name) = ImageName::from_str(text) else {
        return;
    };
    let _ = (
        name.registry(),
        name.repository(),
        name.tag(),
        name.digest(),
    );
    let _ = (name.full_repository(), name.familiar_repository());
    let printed = name.to_string();
    let reparsed = ImageName::from_str(&printed)
        .unwrap_or_else(|e| panic!("{text:?} parsed, but its display {printed:?} does not: {e}"));
    assert_eq!(reparsed, name, "{text:?} changed through {printed:?}");
    let familiar = name.familiar();
    let again = ImageName::from_str(&familiar)
        .unwrap_or_else(|e| panic!("{text:?} parsed, but its familiar {familiar:?} does not: {e}"));
    assert_eq!(
        again, name,
        "{text:?} changed through familiar {familiar:?}"
    );
}

/// Stores the NUL-separated documents of `data` last first, linking each to the next,
/// and loads the first as an image.
fn load_chain(data: &[u8]) {
    let documents: Vec<&[u8]> = data.splitn(MAX_DOCUMENTS, |&b| b == 0).collect();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let store = ContentStore::open(tmp.path().join("store")).expect("open content store");
    let mut next: Option<(Digest, u64)> = None;
    for document in documents.iter().rev() {
        let bytes = match &next {
            Some((digest, size)) => link(document, digest, *size),
            None => document.to_vec(),
        };
        let blob = store.put(&bytes).expect("store blob");
        next = Some((blob.digest, blob.size));
    }
    let Some((digest, size)) = next else {
        return;
    };
    let descriptor = Descriptor::new(MediaType::ImageManifest, size, &digest);
    if let Ok(image) = rbuild_core::image::load_image(&store, &descriptor) {
        let _ = image.digest();
        let _ = image.layers();
        let _ = image.size();
    }
}

/// `document` with its config and manifest references pointed at `digest`; unchanged
/// if it is not a JSON object.
fn link(document: &[u8], digest: &Digest, size: u64) -> Vec<u8> {
    let Ok(serde_json::Value::Object(mut object)) = serde_json::from_slice(document) else {
        return document.to_vec();
    };
    let target = serde_json::Value::String(digest.to_string());
    if let Some(serde_json::Value::Object(config)) = object.get_mut("config") {
        config.insert("digest".to_owned(), target.clone());
        config.insert("size".to_owned(), size.into());
    }
    if let Some(serde_json::Value::Array(manifests)) = object.get_mut("manifests") {
        for manifest in manifests.iter_mut() {
            if let serde_json::Value::Object(manifest) = manifest {
                manifest.insert("digest".to_owned(), target.clone());
                manifest.insert("size".to_owned(), size.into());
            }
        }
    }
    serde_json::to_vec(&object).expect("serialize json")
}
