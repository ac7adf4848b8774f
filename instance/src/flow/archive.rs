//! Flows as files, for keeping them in Git: a namespace exports as a tar
//! archive of `<namespace>/<id>.yml` files (unpack it into a directory with
//! any tar tool), and imports from such an archive (or one packed from a
//! directory) or from YAML text holding one or several flows.
//!
//! Only what is needed is read: ustar/pax regular files; everything else
//! in an archive (directories, links, other files) is skipped.

/// Size of a tar block.
const BLOCK: usize = 512;

/// Largest file accepted inside an archive (a flow is at most 1 MiB).
const MAX_FILE: u64 = super::MAX_SOURCE_BYTES as u64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    #[error("the archive is cut short (at byte {0})")]
    Truncated(usize),
    #[error("the archive header at byte {0} is damaged (bad checksum or size)")]
    BadHeader(usize),
    #[error("`{0}` is larger than a flow may be")]
    TooLarge(String),
    #[error("`{0}` is not UTF-8 text")]
    NotText(String),
}

/// One file of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveFile {
    pub path: String,
    pub text: String,
}

/// Writes files as an uncompressed ustar archive (pure).
pub fn write_tar(files: &[ArchiveFile], mtime: i64) -> Vec<u8> {
    let mut out = Vec::new();
    for file in files {
        let data = file.text.as_bytes();
        let mut header = [0u8; BLOCK];
        let (prefix, name) = split_path(&file.path);
        put(&mut header[0..100], name.as_bytes());
        put(&mut header[100..108], b"0000644\0");
        put(&mut header[108..116], b"0000000\0");
        put(&mut header[116..124], b"0000000\0");
        put(
            &mut header[124..136],
            format!("{:011o}\0", data.len()).as_bytes(),
        );
        put(
            &mut header[136..148],
            format!("{:011o}\0", mtime.max(0)).as_bytes(),
        );
        header[156] = b'0';
        put(&mut header[257..263], b"ustar\0");
        put(&mut header[263..265], b"00");
        put(&mut header[345..500], prefix.as_bytes());
        header[148..156].fill(b' ');
        let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
        put(&mut header[148..156], format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    }
    out.resize(out.len() + 2 * BLOCK, 0);
    out
}

fn put(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// ustar keeps names over 100 bytes as prefix + name.
fn split_path(path: &str) -> (&str, &str) {
    if path.len() <= 100 {
        return ("", path);
    }
    match path
        .char_indices()
        .rev()
        .find(|(i, c)| *c == '/' && path.len() - i - 1 <= 100 && *i <= 155)
    {
        Some((i, _)) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

fn octal(field: &[u8]) -> Option<u64> {
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| char::from(*b))
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

fn text_field(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// Reads the regular files of a tar archive (pure).
pub fn read_tar(bytes: &[u8]) -> Result<Vec<ArchiveFile>, ArchiveError> {
    let mut files = Vec::new();
    let mut at = 0;
    let mut long_name: Option<String> = None;
    while at + BLOCK <= bytes.len() {
        let header = &bytes[at..at + BLOCK];
        if header.iter().all(|b| *b == 0) {
            break;
        }
        let stored = octal(&header[148..156]).ok_or(ArchiveError::BadHeader(at))?;
        let sum: u64 = header
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(*b)
                }
            })
            .sum();
        if sum != stored {
            return Err(ArchiveError::BadHeader(at));
        }
        let size = octal(&header[124..136]).ok_or(ArchiveError::BadHeader(at))?;
        let size_usize = usize::try_from(size).map_err(|_| ArchiveError::BadHeader(at))?;
        let data_start = at + BLOCK;
        let data_end = data_start
            .checked_add(size_usize)
            .ok_or(ArchiveError::BadHeader(at))?;
        if data_end > bytes.len() {
            return Err(ArchiveError::Truncated(bytes.len()));
        }
        let data = &bytes[data_start..data_end];
        let prefix = text_field(&header[345..500]);
        let name = text_field(&header[0..100]);
        let mut path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        match header[156] {
            // GNU long name: the next entry's name.
            b'L' => {
                long_name = Some(text_field(data));
            }
            b'0' | 0 => {
                if let Some(long) = long_name.take() {
                    path = long;
                }
                if size > MAX_FILE {
                    return Err(ArchiveError::TooLarge(path));
                }
                let text = String::from_utf8(data.to_vec())
                    .map_err(|_| ArchiveError::NotText(path.clone()))?;
                files.push(ArchiveFile { path, text });
            }
            // Directories, links, pax headers and the like.
            _ => long_name = None,
        }
        at = data_start + size_usize.div_ceil(BLOCK) * BLOCK;
    }
    Ok(files)
}

/// Whether a path names a flow file.
pub fn is_flow_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    !name.starts_with('.') && (name.ends_with(".yml") || name.ends_with(".yaml"))
}

/// Splits YAML text holding several documents (`---` lines) into one text
/// per document, dropping empty ones.
pub fn split_documents(text: &str) -> Vec<String> {
    let mut documents = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.trim_end() == "---" {
            if !current.trim().is_empty() {
                documents.push(std::mem::take(&mut current));
            }
            current.clear();
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.trim().is_empty() {
        documents.push(current);
    }
    documents
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_round_trip_with_long_paths() {
        let long = format!("{}/{}.yml", "a".repeat(120), "flow");
        let files = vec![
            ArchiveFile {
                path: "team/hello.yml".into(),
                text: "id: hello\n".into(),
            },
            ArchiveFile {
                path: long.clone(),
                text: "x".repeat(700),
            },
        ];
        let tar = write_tar(&files, 1_700_000_000);
        assert_eq!(tar.len() % BLOCK, 0);
        assert_eq!(read_tar(&tar), Ok(files));
    }

    #[test]
    fn damaged_archives_are_refused() {
        let mut tar = write_tar(
            &[ArchiveFile {
                path: "a.yml".into(),
                text: "id: a\n".into(),
            }],
            0,
        );
        tar[10] ^= 1;
        assert_eq!(read_tar(&tar), Err(ArchiveError::BadHeader(0)));
        let tar = write_tar(
            &[ArchiveFile {
                path: "a.yml".into(),
                text: "x".repeat(2000),
            }],
            0,
        );
        assert!(matches!(
            read_tar(&tar[..1024]),
            Err(ArchiveError::Truncated(_))
        ));
    }

    #[test]
    fn documents_split_on_separator_lines() {
        let docs = split_documents("---\nid: a\n---\n\n---\nid: b\nx: '---'\n");
        assert_eq!(docs, ["id: a\n", "id: b\nx: '---'\n"]);
        assert!(is_flow_file("ns/a.yaml"));
        assert!(!is_flow_file("ns/.hidden.yml"));
        assert!(!is_flow_file("README.md"));
    }
}
