//! Small helpers shared by the CLI and the app: dates and time formatting, thread priority.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now_iso() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    iso_from_unix(secs)
}

/// Formats seconds since 1970 as an ISO 8601 UTC timestamp (proleptic Gregorian calendar).
pub fn iso_from_unix(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm): eras of 400 years starting 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Lowers the calling thread's scheduling priority, so that on a machine with few cores the
/// window's threads (its own and the software rasteriser's) get the processor first and
/// frames keep coming while the engine uses what is left: nice +`by`, and on Linux the
/// SCHED_IDLE policy, under which a thread runs only when no normal thread wants the core
/// (nice alone still let the engine's threads delay a frame by a scheduler slice). Among
/// SCHED_IDLE threads the nice values still order them. Best effort: a failure leaves the
/// priority as it was.
pub fn lower_thread_priority(by: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread's own id; no memory is shared.
        // On Linux, nice values and policies are per thread: PRIO_PROCESS with a thread id,
        // and sched_setscheduler with 0, set the calling thread's.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            let now = libc::getpriority(libc::PRIO_PROCESS, tid);
            libc::setpriority(libc::PRIO_PROCESS, tid, now + by);
            let param = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = by;
}

/// A duration in seconds as the largest whole unit: "42 s", "7 min", "3 h", "12 days".
pub fn format_duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3_600 => format!("{} min", s / 60),
        3_600..86_400 => format!("{} h", s / 3_600),
        _ => format!("{} days", s / 86_400),
    }
}

/// Writes one line to standard error, ignoring a failed write: a notice must not end a
/// command (`eprintln!` panics on a full or closed stderr, `2>/dev/full`).
pub fn say(line: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A path as a message line shows it: control characters escaped ([`one_line`]).
pub fn shown(path: &std::path::Path) -> String {
    one_line(&path.display().to_string())
}

/// `text` with its control characters escaped (a newline in a file's name as `\n`): what the
/// command line prints of a name stays on its line.
pub fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            // Control characters, and the invisible marks that reorder or hide text
            // (bidirectional overrides and isolates, zero-width marks).
            let is_hidden = matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{061c}' | '\u{feff}');
            let escaped: Vec<char> = if c.is_control() || is_hidden {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_dates() {
        assert_eq!(super::iso_from_unix(0), "1970-01-01T00:00:00Z");
        // `date -u -d @1795520096` prints 2026-11-24 11:34:56 UTC.
        assert_eq!(super::iso_from_unix(1_795_520_096), "2026-11-24T11:34:56Z");
        // 2000-02-29 (a leap day of a century leap year) is day 11,016.
        assert_eq!(
            super::iso_from_unix(11_016 * 86_400),
            "2000-02-29T00:00:00Z"
        );
    }
}
