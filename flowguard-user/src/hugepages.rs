//! Transparent huge pages for the heap: flowguard's binaries restart themselves once at
//! startup with glibc's `glibc.malloc.hugetlb=1` tunable, so that malloc asks the kernel
//! (`MADV_HUGEPAGE`) to back its heap and its large blocks with 2 MiB pages.
//!
//! Why: the detectors keep tens of megabytes of per-key state (pair and host maps, beacon
//! series and their event lists, sketches), spread over the heap in blocks large and
//! small, and read one or two cache lines of it at random per record. With 4 KiB pages
//! the four detectors' state together far exceeds what the TLB covers, so most of those
//! reads pay a page walk as well; a few dozen 2 MiB entries cover all of it. On the
//! detect benchmark (busy site, all detectors, one core) the tunable made the same binary
//! faster in 23 of 28 runs interleaved with runs on 4 KiB pages: by up to a third in a
//! slow spell of the host, by a few percent in a fast one. Advising only the blocks of
//! 2 MiB or more (a global allocator that aligned and advised them) was faster in only 6
//! of 16: the gain is in the many small blocks, which only the allocator's own heap
//! handling can reach.
//!
//! Distributions ship THP in `madvise` mode (only regions that ask get huge pages), and
//! glibc reads its tunables from the environment before `main`, hence the restart. It is
//! done only when it can matter: THP in `madvise` mode (in `always` mode the heap gets
//! huge pages anyway; in `never` mode it cannot), and the tunable not already set. It is
//! advice all the way down: a glibc without the tunable (before 2.35) ignores it, and a
//! kernel without a free huge page uses 4 KiB pages. Setting `FLOWGUARD_HUGE_PAGES=0`
//! keeps the process on 4 KiB pages (for measuring the difference).

use std::ffi::{OsStr, OsString};

/// Set in the restarted process (to `1`), so it restarts at most once; `0` from the user
/// turns the restart off.
pub const ENV_MARK: &str = "FLOWGUARD_HUGE_PAGES";

/// The tunable that turns the heap's huge pages on.
pub const TUNABLE: &str = "glibc.malloc.hugetlb=1";

/// Where the kernel says which THP mode it runs in (`always [madvise] never`).
const THP_MODE: &str = "/sys/kernel/mm/transparent_hugepage/enabled";

/// The `GLIBC_TUNABLES` value to restart with, or `None` when no restart is due:
/// `thp_mode` is the content of the kernel's THP mode file (if readable), `mark` the
/// value of [`ENV_MARK`] and `tunables` that of `GLIBC_TUNABLES`.
#[must_use]
pub fn restart_tunables(
    thp_mode: Option<&str>,
    mark: Option<&OsStr>,
    tunables: Option<&OsStr>,
) -> Option<OsString> {
    if mark.is_some() || !thp_mode.is_some_and(|m| m.contains("[madvise]")) {
        return None;
    }
    match tunables {
        // The user chose a hugetlb setting of their own; it stands.
        Some(t) if t.to_string_lossy().contains("glibc.malloc.hugetlb") => None,
        // Tunables are a colon-separated list.
        Some(t) if !t.is_empty() => {
            let mut all = t.to_owned();
            all.push(":");
            all.push(TUNABLE);
            Some(all)
        }
        _ => Some(TUNABLE.into()),
    }
}

/// Whether this process runs with the heap on huge pages: what the benchmark prints
/// beside its figures.
#[must_use]
pub fn describe() -> String {
    let mode = std::fs::read_to_string(THP_MODE).unwrap_or_default();
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if mode.contains("[always]") {
        "transparent huge pages (THP mode always)".into()
    } else if mode.contains("[madvise]") && tunables.contains(TUNABLE) {
        format!("transparent huge pages ({TUNABLE})")
    } else {
        format!("4 KiB pages (THP mode: {})", mode.trim())
    }
}

/// Restarts the program with the heap on huge pages when that is due (see the module
/// docs); call it first thing in `main`. Returns only when no restart was due or the
/// restart failed (the process then runs on as it is).
pub fn restart_if_due() {
    use std::os::unix::process::CommandExt as _;

    let mode = std::fs::read_to_string(THP_MODE).ok();
    let Some(tunables) = restart_tunables(
        mode.as_deref(),
        std::env::var_os(ENV_MARK).as_deref(),
        std::env::var_os("GLIBC_TUNABLES").as_deref(),
    ) else {
        return;
    };
    let mut argv = std::env::args_os();
    let program = argv.next().unwrap_or_default();
    // `/proc/self/exe` is this very binary, whatever path or `PATH` lookup started it;
    // the arguments, descriptors and process id stay the same. `exec` returns only on
    // failure, and then nothing has changed.
    let _err = std::process::Command::new("/proc/self/exe")
        .arg0(program)
        .args(argv)
        .env("GLIBC_TUNABLES", tunables)
        .env(ENV_MARK, "1")
        .exec();
}

#[cfg(test)]
mod tests {
    use super::*;

    const MADVISE: Option<&str> = Some("always [madvise] never\n");

    #[test]
    fn restarts_only_in_madvise_mode_once_and_keeps_other_tunables() {
        let os = |s: &'static str| Some(OsStr::new(s));
        assert_eq!(restart_tunables(MADVISE, None, None), Some(TUNABLE.into()));
        assert_eq!(
            restart_tunables(MADVISE, None, os("")),
            Some(TUNABLE.into())
        );
        assert_eq!(
            restart_tunables(MADVISE, None, os("glibc.malloc.arena_max=2")),
            Some(format!("glibc.malloc.arena_max=2:{TUNABLE}").into())
        );
        // Already restarted, or turned off by the user.
        assert_eq!(restart_tunables(MADVISE, os("1"), None), None);
        assert_eq!(restart_tunables(MADVISE, os("0"), None), None);
        // The user's own hugetlb choice stands.
        assert_eq!(
            restart_tunables(MADVISE, None, os("glibc.malloc.hugetlb=0")),
            None
        );
        // Nothing to gain: THP everywhere already, or nowhere, or no THP at all.
        assert_eq!(
            restart_tunables(Some("[always] madvise never"), None, None),
            None
        );
        assert_eq!(
            restart_tunables(Some("always madvise [never]"), None, None),
            None
        );
        assert_eq!(restart_tunables(None, None, None), None);
    }
}
