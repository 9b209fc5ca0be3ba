//! Layer compression: gzip on every core (gzp), zstd multithreaded, or none.

use std::io::{self, BufRead, Read, Write};
use std::str::FromStr;

use gzp::ZWriter;
use gzp::deflate::Gzip;
use gzp::par::compress::{ParCompress, ParCompressBuilder};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip, the default and what every consumer reads.
    #[default]
    Gzip,
    /// zstd, smaller and faster, read by recent engines.
    Zstd,
}

/// gzip member header magic, RFC 1952 section 2.3.1.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// zstd frame magic number, RFC 8878 section 3.1.1.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl Compression {
    /// The compression a layer media type names: `...+zstd`, `...+gzip` /
    /// `....tar.gzip`, anything else uncompressed (image-spec media-types.md).
    pub fn from_media_type(media_type: &str) -> Self {
        if media_type.ends_with("zstd") {
            Compression::Zstd
        } else if media_type.ends_with("gzip") {
            Compression::Gzip
        } else {
            Compression::None
        }
    }

    /// The level used when none is given: gzip 6 (as gzip and pigz), zstd 3.
    pub fn default_level(self) -> u32 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 6,
            Compression::Zstd => 3,
        }
    }

    /// The name used on the command line and in `-o compression=`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// Guesses the compression of a stream from its first bytes.
    pub fn detect(head: &[u8]) -> Self {
        if head.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else if head.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" | "uncompressed" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            other => Err(format!(
                "unknown compression {other:?}: expected gzip, zstd or uncompressed"
            )),
        }
    }
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A compressing writer that gives its inner writer back when finished.
pub(crate) enum Compressor<W: Write + Send + 'static> {
    Plain(W),
    Gzip(ParCompress<'static, Gzip, W>),
    Zstd(zstd::Encoder<'static, W>),
    /// A gzip writer whose output failed: gzp panics if written to again after an
    /// error, so the error is kept and returned instead (kind, message).
    Failed(io::ErrorKind, String),
}

impl<W: Write + Send + 'static> Compressor<W> {
    /// Runs `op` on the gzip writer; on error, drops it (its threads have ended) and
    /// remembers the error for every later call.
    fn gzip<T>(
        &mut self,
        op: impl FnOnce(&mut ParCompress<'static, Gzip, W>) -> io::Result<T>,
    ) -> io::Result<T> {
        let result = match self {
            Compressor::Gzip(w) => op(w),
            Compressor::Failed(kind, message) => Err(io::Error::new(*kind, message.clone())),
            _ => Err(io::Error::other("not a gzip writer")),
        };
        if let Err(e) = &result {
            *self = Compressor::Failed(e.kind(), e.to_string());
        }
        result
    }
}

impl<W: Write + Send + 'static> Compressor<W> {
    pub(crate) fn new(inner: W, compression: Compression, level: Option<u32>) -> io::Result<Self> {
        let level = level.unwrap_or(compression.default_level());
        Ok(match compression {
            Compression::None => Compressor::Plain(inner),
            Compression::Gzip => {
                let builder = ParCompressBuilder::<Gzip>::new()
                    .compression_level(gzp::Compression::new(level.min(9)))
                    .num_threads(threads())
                    .map_err(io::Error::other)?;
                Compressor::Gzip(builder.from_writer(inner))
            }
            Compression::Zstd => {
                let mut enc = zstd::Encoder::new(inner, level as i32)?;
                enc.multithread(threads() as u32)?;
                Compressor::Zstd(enc)
            }
        })
    }

    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Plain(mut w) => {
                w.flush()?;
                Ok(w)
            }
            Compressor::Gzip(mut w) => w.finish().map_err(|e| match e {
                gzp::GzpError::Io(e) => e,
                other => io::Error::other(other),
            }),
            Compressor::Zstd(w) => w.finish(),
            Compressor::Failed(kind, message) => Err(io::Error::new(kind, message)),
        }
    }
}

impl<W: Write + Send + 'static> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Plain(w) => w.write(buf),
            Compressor::Gzip(_) | Compressor::Failed(..) => self.gzip(|w| w.write(buf)),
            Compressor::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Plain(w) => w.flush(),
            Compressor::Gzip(_) | Compressor::Failed(..) => self.gzip(|w| w.flush()),
            Compressor::Zstd(w) => w.flush(),
        }
    }
}

/// Wraps `reader` in the decompressor its magic number calls for.
pub fn decompress<'a, R: BufRead + 'a>(mut reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let head = reader.fill_buf()?;
    Ok(match Compression::detect(head) {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::Decoder::with_buffer(reader)?),
    })
}
