//! PyTorch checkpoints: what `torch.save(model.state_dict(), "net.pt")` writes (a zip holding
//! a pickle of the state_dict and one entry per storage), or a checkpoint dictionary holding one
//! (`{"model_state_dict": …, "optimizer_state_dict": …}`).
//!
//! The pickle is read by candle's pickle machine, which runs no code: it only builds a tree of
//! objects. It is driven one opcode at a time beside a shadow of its stack and memo that
//! tracks each object's size (string bytes included) and depth, so a pickle that would grow
//! past [`MAX_UNITS`] (by fetching and storing one object again and again, say) or nest past
//! [`MAX_DEPTH`] is refused before it does, in time linear in its length. The tensors' names
//! and shapes are known before any storage is read: the caller checks them first, and every
//! storage is read whole (its CRC checked) only after its size is checked against the file's.
//! A state_dict holds weights without the network: the caller decides which network they fit.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Tensor};

/// One tensor of a state_dict, as f32.
#[derive(Debug, Clone)]
pub struct TorchTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// The first bytes of a zip file: PyTorch's format since 1.6 (and of an empty zip).
const ZIP_MAGICS: [&[u8]; 2] = [b"PK\x03\x04", b"PK\x05\x06"];
/// The first bytes of PyTorch's legacy format (before 1.6): a pickled magic number.
const LEGACY_MAGIC: &[u8] = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19";

/// At most this large a pickle: a state_dict's is a few kilobytes per hundred tensors.
const MAX_PICKLE: u64 = 16 << 20;
/// At most this many units alive in the pickle machine (its stack and memo together), a unit
/// being one object or 16 bytes of a string: about 100 MB of objects at most, where a
/// state_dict of a few hundred tensors needs tens of thousands.
pub const MAX_UNITS: usize = 2_000_000;
/// At most this deep a tree (a state_dict's is under ten deep).
pub const MAX_DEPTH: usize = 64;
/// At most this many characters of a name in a message.
const NAME_CHARS: usize = 80;

/// Whether `bytes` look like a PyTorch file, zip or legacy.
pub fn is_torch(bytes: &[u8]) -> bool {
    ZIP_MAGICS.iter().any(|m| bytes.starts_with(m)) || bytes.starts_with(LEGACY_MAGIC)
}

/// `name` as a message shows it: control characters escaped, at most `NAME_CHARS`
/// characters.
pub fn shown_name(name: &str) -> String {
    let line = crate::util::one_line(name);
    match line.char_indices().nth(NAME_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// A candle error in a few words: its first line (a backtrace follows it when
/// RUST_BACKTRACE is set), shortened; an input that ends early said as such.
fn words(e: &candle_core::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    if first.contains("failed to fill whole buffer") || first.contains("UnexpectedEof") {
        return "it ends early (truncated?)".into();
    }
    shown_name(first)
}

/// The tensors of the state_dict in a PyTorch file's bytes (in no particular order); else why
/// not, in words for a user who saved it. Reads at most four times the file's size of values.
pub fn read_state_dict(bytes: &[u8]) -> Result<Vec<TorchTensor>, String> {
    read_state_dict_checked(bytes, |_| Ok(()))
}

/// [`read_state_dict`], with `check` given every tensor's name and shape before any value is
/// read: its error is the file's.
pub fn read_state_dict_checked(
    bytes: &[u8],
    check: impl FnOnce(&[(&str, &[usize])]) -> Result<(), String>,
) -> Result<Vec<TorchTensor>, String> {
    if bytes.starts_with(LEGACY_MAGIC) {
        return Err(
            "a PyTorch file in the legacy format (before PyTorch 1.6); save it again \
                    with torch.save(model.state_dict(), PATH) in PyTorch 1.6 or later"
                .into(),
        );
    }
    // candle's pickle machine indexes tuples it expects to be long enough; a malformed file
    // must not take the process down, so a panic inside becomes this file's error (the default
    // hook, which would print it, is held back meanwhile).
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_zip(bytes, check)));
    std::panic::set_hook(hook);
    read.unwrap_or_else(|_| Err("not a readable PyTorch file (its pickle is malformed)".into()))
}

/// A tensor of the state_dict before its values are read.
struct Entry {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    /// Where its values start in its storage entry, in bytes.
    offset: usize,
    /// Its storage entry in the zip.
    path: String,
    /// The values its storage holds, as the pickle declares them.
    storage_values: usize,
}

fn read_zip(
    bytes: &[u8],
    check: impl FnOnce(&[(&str, &[usize])]) -> Result<(), String>,
) -> Result<Vec<TorchTensor>, String> {
    // torch.save's archive starts at the file's first byte. The zip crate's default guesses
    // where it starts from the central directory, and guessed wrong (refusing the file) when
    // the first entry's name is 30 bytes long: a 21-character file stem, as
    // `mnist_cnn_state_dict1.pt`.
    let at_start = zip::read::Config {
        archive_offset: zip::read::ArchiveOffset::Known(0),
    };
    let mut zip = zip::ZipArchive::with_config(at_start, Cursor::new(bytes))
        .map_err(|e| format!("not a readable PyTorch file (zip: {e})"))?;
    if zip.has_duplicate_names() {
        return Err(
            "its zip holds two entries under one name (PyTorch would read one, another \
             reader the other); not a file torch.save wrote"
                .into(),
        );
    }
    let names: Vec<String> = zip
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not a readable PyTorch file (zip: {e})"))?;
    let Some(pickle) = names.iter().find(|n| n.ends_with("data.pkl")).cloned() else {
        return Err("a zip file without data.pkl, not a PyTorch file".into());
    };
    if names.iter().any(|n| n.ends_with("constants.pkl")) {
        return Err(
            "a TorchScript module (torch.jit.save); backwork reads a state_dict \
                    (torch.save(model.state_dict(), PATH)) or an ONNX export"
                .into(),
        );
    }
    let dir = pickle.trim_end_matches(".pkl").to_string();
    let big_endian = byte_order(&mut zip, &names, &dir)?;
    let data = entry_bytes(&mut zip, &pickle, MAX_PICKLE)
        .map_err(|e| format!("its pickle {}: {e}", shown_name(&pickle)))?;
    // torch.save writes protocol 2, the one candle's machine reads; a later protocol
    // (pickle_protocol=4 or 5) uses opcodes it does not know.
    if let [0x80, v, ..] = data[..]
        && v > 2
    {
        return Err(format!(
            "its pickle is protocol {v} (torch.save(…, pickle_protocol={v})); save it with \
             torch.save's default, protocol 2"
        ));
    }
    let top = unpickle(&data)?;
    let entries: Vec<Entry> = state_dict(top)?
        .into_iter()
        .map(|(name, value)| describe(&dir, name, value))
        .collect::<Result<_, _>>()?;
    let listed: Vec<(&str, &[usize])> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.shape.as_slice()))
        .collect();
    check(&listed)?;
    // Each storage is read once, however many tensors view it (one flat storage for every
    // parameter, say); the views' own values may repeat a storage's (tied weights): up to
    // four times the file in all.
    let mut budget = (bytes.len() as u64).saturating_mul(4);
    let mut storages = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let read = Storages {
            file_len: bytes.len() as u64,
            big_endian,
        };
        out.push(read_values(&mut zip, &mut storages, e, read, &mut budget)?);
    }
    Ok(out)
}

/// What every storage read shares: the file's length and its byte order.
#[derive(Clone, Copy)]
struct Storages {
    file_len: u64,
    big_endian: bool,
}

/// Whether the storages are big-endian, from the `byteorder` entry PyTorch writes beside
/// data.pkl (little-endian when there is none, as before PyTorch 1.11).
fn byte_order(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    names: &[String],
    dir: &str,
) -> Result<bool, String> {
    let base = dir.trim_end_matches("data");
    let want = format!("{base}byteorder");
    if !names.contains(&want) {
        return Ok(false);
    }
    let order = entry_bytes(zip, &want, 64).map_err(|e| format!("its byteorder entry: {e}"))?;
    match order.as_slice() {
        b"little" => Ok(false),
        b"big" => Ok(true),
        other => Err(format!(
            "its byteorder entry says \"{}\", neither \"little\" nor \"big\"",
            shown_name(&String::from_utf8_lossy(other))
        )),
    }
}

/// The whole of zip entry `name`, at most `max` bytes, its CRC checked.
fn entry_bytes(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    max: u64,
) -> Result<Vec<u8>, String> {
    let mut entry = zip.by_name(name).map_err(|e| match e {
        zip::result::ZipError::FileNotFound => "it is missing".to_string(),
        other => compressed_words(other.to_string()),
    })?;
    if entry.size() > max {
        return Err(format!(
            "it declares {} bytes, more than it can hold",
            entry.size()
        ));
    }
    let mut out = Vec::new();
    entry
        .by_ref()
        .take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| compressed_words(e.to_string()))?;
    if out.len() as u64 > max {
        return Err(format!("over {max} bytes"));
    }
    Ok(out)
}

/// The zip crate's words for an entry it cannot read, with the way out when the entry is
/// compressed (torch.save stores entries as they are; backwork reads no other method).
fn compressed_words(words: String) -> String {
    if words.to_lowercase().contains("compression method") {
        format!(
            "{words} (compressed; torch.save stores its entries uncompressed: load the file in \
             PyTorch and save it again with torch.save)"
        )
    } else {
        words
    }
}

/// What one object of the pickle machine holds, tracked beside it: its units, its depth, and
/// whether it is a mark.
#[derive(Clone, Copy, Default)]
struct Shadow {
    units: usize,
    depth: usize,
    mark: bool,
    /// The memo slot it was stored in, if any.
    memo: Option<u32>,
    /// Whether it was fetched from the memo (candle's machine copies what Python shares).
    copy: bool,
}

/// The pickle machine's stack and memo, as sizes: what each opcode does to them mirrors
/// candle's machine (which it runs after, never instead of).
#[derive(Default)]
struct Guard {
    stack: Vec<Shadow>,
    memo: HashMap<u32, Shadow>,
    /// Units alive in the stack and the memo.
    live: usize,
    /// The memo slots fetched so far.
    fetched: std::collections::HashSet<u32>,
    /// Whether an object shared through the memo was changed after being fetched: Python's
    /// pickle sees the change wherever the object is, candle's machine only in one copy.
    diverged: bool,
}

impl Guard {
    fn push(&mut self, s: Shadow) {
        self.live += s.units;
        self.stack.push(s);
    }

    fn pop(&mut self) -> Shadow {
        let s = self.stack.pop().unwrap_or_default();
        self.live -= s.units;
        s
    }

    fn pop_n(&mut self, n: usize) -> Vec<Shadow> {
        (0..n).map(|_| self.pop()).collect()
    }

    fn pop_to_mark(&mut self) -> Vec<Shadow> {
        let mut out = Vec::new();
        while let Some(s) = self.stack.pop() {
            self.live -= s.units;
            if s.mark {
                break;
            }
            out.push(s);
        }
        out
    }

    /// A new object of `own` units holding `parts`.
    fn holding(own: usize, parts: &[Shadow]) -> Shadow {
        Shadow {
            units: own + parts.iter().map(|p| p.units).sum::<usize>(),
            depth: 1 + parts.iter().map(|p| p.depth).max().unwrap_or(0),
            ..Shadow::default()
        }
    }

    /// Adds `parts` to the container on top of the stack.
    fn add_to_top(&mut self, parts: &[Shadow]) {
        let added: usize = parts.iter().map(|p| p.units).sum();
        let deepest = parts.iter().map(|p| p.depth + 1).max().unwrap_or(0);
        if let Some(top) = self.stack.last()
            && (top.copy || top.memo.is_some_and(|id| self.fetched.contains(&id)))
        {
            self.diverged = true;
        }
        if let Some(top) = self.stack.last_mut() {
            top.units += added;
            top.depth = top.depth.max(deepest);
            self.live += added;
        }
    }

    /// Mirrors opcode `op`, which read `arg` (its argument bytes) and `len` bytes in all.
    fn apply(&mut self, op: u8, arg: &[u8], len: usize) {
        let own = 1 + len / 16;
        let memo_id = || match op {
            b'q' | b'h' => arg.first().map(|&b| u32::from(b)),
            _ => arg
                .get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        };
        match op {
            b'(' => self.push(Shadow {
                units: 1,
                depth: 1,
                mark: true,
                ..Shadow::default()
            }),
            b'Q' | 0x85 => {
                let parts = self.pop_n(1);
                self.push(Self::holding(own, &parts));
            }
            // BUILD sets the state of the object below it.
            b'b' => {
                let parts = self.pop_n(1);
                self.add_to_top(&parts);
            }
            0x86 | b'R' | 0x81 => {
                let parts = self.pop_n(2);
                self.push(Self::holding(own, &parts));
            }
            0x87 => {
                let parts = self.pop_n(3);
                self.push(Self::holding(own, &parts));
            }
            b't' => {
                let parts = self.pop_to_mark();
                self.push(Self::holding(own, &parts));
            }
            b'a' => {
                let parts = self.pop_n(1);
                self.add_to_top(&parts);
            }
            b's' => {
                let parts = self.pop_n(2);
                self.add_to_top(&parts);
            }
            b'e' | b'u' => {
                let parts = self.pop_to_mark();
                self.add_to_top(&parts);
            }
            b'h' | b'j' => {
                let id = memo_id();
                let got = id
                    .and_then(|id| self.memo.get(&id).copied())
                    .unwrap_or_default();
                self.fetched.extend(id);
                self.push(Shadow { copy: true, ..got });
            }
            b'q' | b'r' => {
                if let (Some(top), Some(id)) = (self.stack.last_mut(), memo_id()) {
                    top.memo = Some(id);
                }
                let top = self.stack.last().copied().unwrap_or_default();
                if let Some(id) = memo_id() {
                    self.live += top.units;
                    if let Some(old) = self.memo.insert(id, top) {
                        self.live -= old.units;
                    }
                }
            }
            0x80 | b'.' => {}
            // Every other opcode candle knows pushes one new object from its argument.
            _ => self.push(Shadow {
                units: own,
                depth: 1,
                ..Shadow::default()
            }),
        }
    }

    fn within_limits(&self) -> bool {
        self.live <= MAX_UNITS && self.stack.last().is_none_or(|s| s.depth <= MAX_DEPTH)
    }
}

/// Runs the pickle machine over `data` one opcode at a time beside its [`Guard`], refusing a
/// tree that would grow past the limits.
fn unpickle(data: &[u8]) -> Result<Object, String> {
    let mut reader = Cursor::new(data);
    let mut stack = Stack::empty();
    let mut guard = Guard::default();
    let bad =
        |e: &candle_core::Error| format!("not a readable PyTorch file (pickle: {})", words(e));
    loop {
        let at = reader.position() as usize;
        let op = data.get(at).copied();
        // The machine allocates a string's declared length before reading it: a length past
        // the pickle's end is refused here instead.
        if op == Some(b'X') {
            let len = data
                .get(at + 1..at + 5)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
            if len.is_none_or(|len| at + 5 + len > data.len()) {
                return Err("not a readable PyTorch file (its pickle is truncated)".into());
            }
        }
        let done = stack.read(&mut reader).map_err(|e| bad(&e))?;
        let end = reader.position() as usize;
        if let Some(op) = op {
            guard.apply(op, data.get(at + 1..end).unwrap_or_default(), end - at);
        }
        if !guard.within_limits() {
            return Err(format!(
                "its pickle builds more than {MAX_UNITS} objects (or string bytes / 16) or \
                 nests them more than {MAX_DEPTH} deep: not a state_dict"
            ));
        }
        if guard.diverged {
            return Err(
                "its pickle changes an object after fetching it from its memo (Python would \
                 change it everywhere it is used, backwork's reader in one copy): not a pickle \
                 torch.save writes"
                    .into(),
            );
        }
        if done {
            break;
        }
    }
    stack.finalize().map_err(|e| bad(&e))
}

/// The class a pickled object is built by, if it is a class.
fn class_of(callable: &Object) -> Option<(&str, &str)> {
    match callable {
        Object::Class {
            module_name,
            class_name,
        } => Some((module_name, class_name)),
        _ => None,
    }
}

/// Whether `value` is built by one of PyTorch's tensor rebuilders (`torch._utils._rebuild_*`,
/// `torch._tensor._rebuild_*`), which backwork reads or names.
fn rebuilder(value: &Object) -> Option<&str> {
    let Object::Reduce { callable, .. } = value else {
        return None;
    };
    let (module, class) = class_of(callable)?;
    (matches!(module, "torch._utils" | "torch._tensor") && class.starts_with("_rebuild"))
        .then_some(class)
}

/// The storage offset (in values) a tensor's pickle gives `_rebuild_tensor_v2`, through the
/// `_rebuild_parameter` and `_rebuild_from_type_v2` wrappers, as written.
fn storage_offset(value: &Object) -> Option<i64> {
    match rebuild_args(value)?.get(1)? {
        Object::Int(i) => Some(i64::from(*i)),
        Object::Long(l) => Some(*l),
        _ => None,
    }
}

/// Whether a tensor's pickle gives it at most one value (an epoch, a step, a best accuracy
/// kept beside a checkpoint's state_dict).
fn is_scalar(value: &Object) -> bool {
    let Some(Object::Tuple(size)) = rebuild_args(value).and_then(|a| a.get(2)) else {
        return false;
    };
    size.iter()
        .all(|d| matches!(d, Object::Int(0 | 1) | Object::Long(0 | 1)))
}

/// The arguments a tensor's pickle gives `_rebuild_tensor_v2` (storage, offset, size,
/// stride, …), through the `_rebuild_parameter` and `_rebuild_from_type_v2` wrappers.
fn rebuild_args(value: &Object) -> Option<&[Object]> {
    let Object::Reduce { callable, args } = value else {
        return None;
    };
    args_of(callable, args)
}

fn args_of<'a>(callable: &Object, args: &'a Object) -> Option<&'a [Object]> {
    let Object::Tuple(args) = args else {
        return None;
    };
    match class_of(callable)?.1 {
        "_rebuild_tensor_v2" => Some(args),
        "_rebuild_parameter" => rebuild_args(args.first()?),
        // (function, type, arguments, state): the function is `_rebuild_tensor_v2` itself.
        "_rebuild_from_type_v2" => args_of(args.first()?, args.get(2)?),
        _ => None,
    }
}

/// Whether `obj` is a dictionary with at least one tensor value.
fn holds_tensors(obj: &Object) -> bool {
    matches!(obj, Object::Dict(kv) if kv.iter().any(|(_, v)| rebuilder(v).is_some()))
}

/// The keys of a dictionary, for messages.
fn keys(kv: &[(Object, Object)]) -> String {
    if kv.is_empty() {
        return "an empty dictionary".into();
    }
    let names: Vec<String> = kv
        .iter()
        .take(8)
        .map(|(k, _)| match k {
            Object::Unicode(s) => format!("\"{}\"", shown_name(s)),
            Object::Int(i) => i.to_string(),
            Object::Long(i) => i.to_string(),
            _ => "a key that is not a string".into(),
        })
        .collect();
    let more = if kv.len() > 8 { ", …" } else { "" };
    format!("a dictionary of {}{more}", names.join(", "))
}

/// The number of tensors among a dictionary's values.
fn tensor_count(kv: &[(Object, Object)]) -> usize {
    kv.iter().filter(|(_, v)| rebuilder(v).is_some()).count()
}

/// The dictionaries of tensors among `kv`'s values, by key, and failing those among their
/// values' values (`{"model": {"state_dict": …}}`), by the last key.
fn nested_state_dicts(kv: Vec<(Object, Object)>) -> Vec<(String, Object)> {
    let key_of = |k: &Object| match k {
        Object::Unicode(s) => s.clone(),
        _ => String::new(),
    };
    let (direct, others): (Vec<_>, Vec<_>) = kv.into_iter().partition(|(_, v)| holds_tensors(v));
    if !direct.is_empty() {
        return direct.into_iter().map(|(k, v)| (key_of(&k), v)).collect();
    }
    others
        .into_iter()
        .filter_map(|(_, v)| match v {
            Object::Dict(inner) => Some(inner),
            _ => None,
        })
        .flatten()
        .filter(|(_, v)| holds_tensors(v))
        .map(|(k, v)| (key_of(&k), v))
        .collect()
}

/// The (name, tensor) pairs of the state_dict `top` is or holds.
fn state_dict(top: Object) -> Result<Vec<(String, Object)>, String> {
    let kv = match top {
        Object::Dict(kv) => kv,
        Object::Reduce { callable, .. } | Object::Build { callable, .. } => {
            let class = match &*callable {
                Object::Reduce { callable, .. } => class_of(callable),
                other => class_of(other),
            }
            .map(|(m, c)| format!(" ({})", shown_name(&format!("{m}.{c}"))))
            .unwrap_or_default();
            return Err(format!(
                "holds a whole pickled object{class}, not a state_dict; save \
                 torch.save(model.state_dict(), PATH) (backwork runs no code from a file)"
            ));
        }
        _ => return Err("holds no state_dict; save torch.save(model.state_dict(), PATH)".into()),
    };
    // A checkpoint holds the model's state_dict among its values (perhaps one level down),
    // maybe beside scalar tensors of its own (an epoch, a best accuracy): the one dictionary
    // of tensors, or the model's by its usual keys when there are several (an EMA copy, say).
    // A state_dict itself holds its tensors directly, more of them (scalars aside) than any
    // dictionary it may also hold.
    let own = kv
        .iter()
        .filter(|(_, v)| rebuilder(v).is_some() && !is_scalar(v))
        .count();
    let listed = keys(&kv);
    let mut found = nested_state_dicts(kv.clone());
    let largest = found
        .iter()
        .map(|(_, v)| match v {
            Object::Dict(inner) => tensor_count(inner),
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    let dict = if own > 0 && own > largest {
        kv
    } else {
        let preferred = ["state_dict", "model_state_dict", "model", "net"];
        let pick = if found.len() == 1 {
            Some(0)
        } else {
            preferred
                .iter()
                .find_map(|p| found.iter().position(|(k, _)| k == p))
        };
        match pick {
            Some(i) => match found.swap_remove(i).1 {
                Object::Dict(inner) => inner,
                _ => return Err("holds no state_dict".into()),
            },
            None if found.is_empty() => {
                return Err(format!(
                    "holds no tensors ({listed}); save torch.save(model.state_dict(), PATH)"
                ));
            }
            None => {
                let which: Vec<String> = found
                    .iter()
                    .take(8)
                    .map(|(k, _)| format!("\"{}\"", shown_name(k)))
                    .collect();
                return Err(format!(
                    "holds several state_dicts ({}); save the network's alone with \
                     torch.save(model.state_dict(), PATH)",
                    which.join(", ")
                ));
            }
        }
    };
    let mut out: Vec<(String, Object)> = Vec::with_capacity(dict.len());
    let mut seen = std::collections::HashSet::new();
    for (k, v) in dict {
        // Entries that are not tensors (the `_metadata` PyTorch keeps with every state_dict,
        // a module's `_extra_state`) hold no weights.
        if rebuilder(&v).is_none() {
            continue;
        }
        let Object::Unicode(name) = k else {
            return Err("its state_dict names a tensor by something other than a string".into());
        };
        // A Python dictionary holds one value per key: a pickle that sets one twice is read
        // differently by different readers.
        if !seen.insert(name.clone()) {
            return Err(format!(
                "its state_dict sets \"{}\" twice; not a dictionary torch.save wrote",
                shown_name(&name)
            ));
        }
        out.push((name, v));
    }
    Ok(out)
}

/// What the pickle says of one tensor, checked: a float type, laid out contiguously.
fn describe(dir: &str, name: String, value: Object) -> Result<Entry, String> {
    let shown = shown_name(&name);
    let kind = rebuilder(&value).unwrap_or_default().to_string();
    if !matches!(
        kind.as_str(),
        "_rebuild_tensor_v2" | "_rebuild_parameter" | "_rebuild_from_type_v2"
    ) {
        return Err(format!(
            "{shown} is a kind of tensor backwork does not read ({}: sparse, quantized, or \
             without storage); save dense float tensors",
            shown_name(&kind)
        ));
    }
    // candle multiplies the offset (in values) by the value size unchecked: a hostile offset
    // of 2^62 floats wraps to byte 0 and would read the start of the storage as if valid.
    let offset = storage_offset(&value);
    let info = value
        .into_tensor_info(Object::Unicode(name.clone()), std::path::Path::new(dir))
        .map_err(|e| format!("{shown}: not a tensor PyTorch wrote ({})", words(&e)))?
        .ok_or_else(|| format!("{shown}: not a tensor PyTorch wrote"))?;
    let dtype = info.dtype;
    if !matches!(dtype, DType::F32 | DType::F64 | DType::F16 | DType::BF16) {
        return Err(format!(
            "{shown} holds {dtype:?} values; backwork's networks hold floating-point weights"
        ));
    }
    let bytes = offset
        .and_then(|o| usize::try_from(o).ok())
        .and_then(|o| o.checked_mul(dtype.size_in_bytes()));
    if bytes != Some(info.layout.start_offset()) {
        return Err(format!(
            "{shown} starts at an impossible place in its storage (offset {})",
            offset.map_or_else(|| "unreadable".to_string(), |o| o.to_string())
        ));
    }
    let shape = info.layout.shape().dims().to_vec();
    if info.layout.stride().len() != shape.len() || !info.layout.is_contiguous() {
        return Err(format!(
            "{shown} is not contiguous (strides {:?} for shape {shape:?}); save \
             {{k: v.contiguous() for k, v in model.state_dict().items()}}",
            info.layout.stride()
        ));
    }
    Ok(Entry {
        name,
        dtype,
        shape,
        offset: info.layout.start_offset(),
        path: info.path,
        storage_values: info.storage_size,
    })
}

/// Reads one tensor's values from its storage entry (read once into `storages`), checked:
/// the entry holds exactly the values the pickle declares, and the tensor lies inside them;
/// its values count against `budget`.
fn read_values(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    storages: &mut std::collections::HashMap<String, Vec<u8>>,
    e: Entry,
    read: Storages,
    budget: &mut u64,
) -> Result<TorchTensor, String> {
    let shown = shown_name(&e.name);
    let storage = shown_name(&e.path);
    let size = e.dtype.size_in_bytes();
    let impossible = || format!("{shown} has an impossible shape {:?}", e.shape);
    let count = e
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(impossible)?;
    let own = (count as u64)
        .checked_mul(size as u64)
        .ok_or_else(impossible)?;
    let need = own.checked_add(e.offset as u64).ok_or_else(impossible)?;
    if need > read.file_len {
        return Err(format!(
            "{shown} needs {need} bytes of its storage {storage}, more than the file holds"
        ));
    }
    if own > *budget {
        return Err(format!(
            "its tensors repeat more storage than a state_dict does (at {shown})"
        ));
    }
    *budget -= own;
    if !storages.contains_key(&e.path) {
        let raw = entry_bytes(zip, &e.path, read.file_len)
            .map_err(|why| format!("{shown}: its storage {storage}: {why}"))?;
        storages.insert(e.path.clone(), raw);
    }
    let raw = storages.get(&e.path).map(Vec::as_slice).unwrap_or_default();
    // PyTorch refuses a storage whose entry is not the size its pickle declares.
    let declared = (e.storage_values as u64).checked_mul(size as u64);
    if declared != Some(raw.len() as u64) {
        return Err(format!(
            "{shown}: its storage {storage} holds {} bytes where its pickle declares {} \
             values of {:?}",
            raw.len(),
            e.storage_values as i64,
            e.dtype
        ));
    }
    if (raw.len() as u64) < need {
        return Err(format!(
            "{shown}: its storage {storage} holds {} bytes, the tensor needs {need} (truncated?)",
            raw.len()
        ));
    }
    let mut part = raw[e.offset..need as usize].to_vec();
    if read.big_endian {
        part.chunks_exact_mut(size).for_each(|c| c.reverse());
    }
    let values = Tensor::from_raw_buffer(&part, e.dtype, &[count], &Device::Cpu)
        .and_then(|t| t.to_dtype(DType::F32))
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|why| format!("{shown}: {}", words(&why)))?;
    Ok(TorchTensor {
        name: e.name,
        shape: e.shape,
        values,
    })
}
