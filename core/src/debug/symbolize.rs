//! Names for instruction addresses of this process, from the symbol tables
//! of the files mapped in it (`/proc/self/maps`).
//!
//! Only the symbol tables are read, through a cache that holds just the
//! bytes read and is dropped with the answer: no DWARF, so no inlined
//! frames and no line numbers, and nothing kept once the profile is done
//! (a global cache of the whole debug info is what makes the `backtrace`
//! crate's symbolization costly in memory).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;

use object::read::ReadCache;
use object::{Object, ObjectSegment};

/// One executable mapping of a file into this process.
#[derive(Debug, Clone)]
pub(crate) struct Mapping {
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// The file offset mapped at `start`.
    pub(crate) offset: u64,
    pub(crate) path: String,
}

/// The process's executable mappings, from `/proc/self/maps`.
pub(crate) fn mappings() -> Vec<Mapping> {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    maps.lines().filter_map(parse_line).collect()
}

/// `start-end perms offset dev inode path`, executable ones only.
fn parse_line(line: &str) -> Option<Mapping> {
    // Five fields one space apart, then padding and the path, which may
    // hold spaces itself.
    let mut fields = line.splitn(6, ' ');
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?;
    let offset = fields.next()?;
    let path = fields.nth(2).unwrap_or("").trim();
    if !perms.contains('x') || path.is_empty() {
        return None;
    }
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        path: path.to_owned(),
    })
}

/// The executable ranges of the libraries the sampler must not unwind
/// from: the C library and its threads, the dynamic loader, libgcc (the
/// unwinder itself) and the vDSO.
pub(crate) fn blocklist(mappings: &[Mapping]) -> Vec<(u64, u64)> {
    const BLOCKED: [&str; 5] = ["libc.", "libc-", "libpthread", "libgcc", "ld-linux"];
    mappings
        .iter()
        .filter(|mapping| {
            let file = mapping.path.rsplit('/').next().unwrap_or("");
            mapping.path == "[vdso]" || BLOCKED.iter().any(|name| file.starts_with(name))
        })
        .map(|mapping| (mapping.start, mapping.end))
        .collect()
}

/// The raw (mangled) symbol name of each address found in a symbol table;
/// addresses that are not are left out.
pub(crate) fn symbolize(
    mappings: &[Mapping],
    addresses: impl IntoIterator<Item = u64>,
) -> HashMap<u64, String> {
    // By file, each address with its offset in that file.
    let mut by_file: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    for address in addresses {
        let Some(mapping) = mappings
            .iter()
            .find(|m| (m.start..m.end).contains(&address) && m.path.starts_with('/'))
        else {
            continue;
        };
        let offset = address - mapping.start + mapping.offset;
        by_file
            .entry(mapping.path.as_str())
            .or_default()
            .push((address, offset));
    }
    let mut names = HashMap::new();
    for (path, addresses) in by_file {
        // A file gone or unreadable leaves its addresses unnamed.
        let Ok(file) = File::open(path) else {
            continue;
        };
        let cache = ReadCache::new(file);
        let Ok(object) = object::File::parse(&cache) else {
            continue;
        };
        // File offset to the address the symbol table uses.
        let segments: Vec<(u64, u64, u64)> = object
            .segments()
            .map(|segment| {
                let (offset, size) = segment.file_range();
                (offset, size, segment.address())
            })
            .collect();
        let symbols = object.symbol_map();
        for (address, offset) in addresses {
            let Some(&(start, _, base)) = segments
                .iter()
                .find(|&&(start, size, _)| (start..start + size).contains(&offset))
            else {
                continue;
            };
            if let Some(symbol) = symbols.containing(offset - start + base) {
                names.insert(address, symbol.name().to_owned());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_maps_line_parses_and_only_executable_ones_count() {
        let line =
            "7f12a000-7f12c000 r-xp 00028000 08:01 1234   /usr/lib/x86_64-linux-gnu/libc.so.6";
        let mapping = parse_line(line).unwrap();
        assert_eq!(
            (mapping.start, mapping.end, mapping.offset),
            (0x7f12a000, 0x7f12c000, 0x28000)
        );
        assert_eq!(mapping.path, "/usr/lib/x86_64-linux-gnu/libc.so.6");
        assert!(parse_line("7f12a000-7f12c000 rw-p 00000000 00:00 0 /x").is_none());
        assert!(parse_line("7f12a000-7f12c000 r-xp 00000000 00:00 0").is_none());
        assert_eq!(blocklist(&[mapping]), [(0x7f12a000, 0x7f12c000)]);
    }

    #[test]
    fn this_function_is_found_by_its_address() {
        let address = this_function_is_found_by_its_address as *const () as usize as u64;
        let names = symbolize(&mappings(), [address]);
        let name = names.get(&address).expect("a name");
        assert!(
            name.contains("this_function_is_found_by_its_address"),
            "{name}"
        );
    }
}
