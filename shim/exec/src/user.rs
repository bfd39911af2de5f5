//! The container's view of the exec's user, read inside the container's mount namespace as
//! runc's `setupUser` and `exec.LookPath` read it.

use std::{
    ffi::CString,
    os::unix::{ffi::OsStrExt, fs::PermissionsExt},
    path::{Path, PathBuf},
};

use crate::error::{Error, Result};

/// HOME from the first `/etc/passwd` entry with this uid, else `/` (runc's default user).
pub fn home(passwd: &str, uid: u32) -> String {
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid))
        .map_or_else(|| "/".to_string(), |f| f[5].to_string())
}

/// The process's environment in `NAME=value` form, with `HOME=home` last where it has no
/// HOME (an empty one was dropped by [`crate::spec`]), as runc's `prepareEnv` ends.
pub fn environ(env: &[(String, String)], home: &str) -> Result<Vec<CString>> {
    let has_home = env.iter().any(|(n, _)| n == "HOME");
    env.iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .chain((!has_home).then_some(("HOME", home)))
        .map(|(n, v)| CString::new(format!("{n}={v}")))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Failed("an environment variable contains a NUL byte".into()))
}

/// Go's `exec.LookPath` against the process's PATH: a name with a slash is used as it is, a
/// bare one is searched in each PATH entry (an empty entry is the current directory).
pub fn look_path(name: &str, path_var: Option<&str>) -> Result<PathBuf> {
    let executable =
        |p: &Path| std::fs::metadata(p).map(|m| !m.is_dir() && m.permissions().mode() & 0o111 != 0);
    if name.contains('/') {
        return match executable(Path::new(name)) {
            Ok(true) => Ok(name.into()),
            Ok(false) => Err(Error::Failed(format!("exec: {name:?}: permission denied"))),
            Err(e) => Err(Error::Failed(format!("exec: {name:?}: stat {name}: {e}"))),
        };
    }
    for dir in path_var.unwrap_or_default().split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        if executable(&candidate).unwrap_or(false) {
            return Ok(candidate);
        }
    }
    Err(Error::Failed(format!(
        "exec: {name:?}: executable file not found in $PATH"
    )))
}

/// runc refuses an id its user namespace does not map (`/proc/self/uid_map` inside it).
pub fn mapped(map: &str, id: u32) -> bool {
    map.lines().any(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        f.len() == 3 && (f[0]..f[0] + f[2]).contains(&u64::from(id))
    })
}

pub fn cstring(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Failed("a path contains a NUL byte".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_is_the_first_entry_of_the_uid_or_the_root() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nbad\nu:x:1000:1000::/home/u:/bin/sh\nv:x:1000:1::/v:/bin/sh\n";
        assert_eq!(home(passwd, 0), "/root");
        assert_eq!(home(passwd, 1000), "/home/u");
        assert_eq!(home(passwd, 7), "/");
        assert_eq!(home("", 0), "/");
    }

    #[test]
    fn home_is_added_last_where_there_is_none() {
        let env = |e: &[(&str, &str)]| {
            e.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        let strs = |v: Vec<CString>| {
            v.into_iter()
                .map(|c| c.into_string().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            strs(environ(&env(&[("A", "1")]), "/h").unwrap()),
            ["A=1", "HOME=/h"]
        );
        assert_eq!(
            strs(environ(&env(&[("HOME", "/x")]), "/h").unwrap()),
            ["HOME=/x"]
        );
    }

    #[test]
    fn the_path_search_finds_executables_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        std::fs::write(dir.path().join("data"), b"").unwrap();
        std::fs::write(dir.path().join("tool"), b"").unwrap();
        std::fs::set_permissions(
            dir.path().join("tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let path = format!("/nonexistent:{d}");
        assert_eq!(
            look_path("tool", Some(&path)).unwrap(),
            dir.path().join("tool")
        );
        let missing = look_path("data", Some(&path)).unwrap_err().to_string();
        assert_eq!(
            missing,
            "exec: \"data\": executable file not found in $PATH"
        );
        assert!(look_path("tool", None).is_err());
        let direct = format!("{d}/tool");
        assert_eq!(look_path(&direct, None).unwrap(), PathBuf::from(&direct));
        assert!(look_path(&format!("{d}/data"), None)
            .unwrap_err()
            .to_string()
            .contains("permission denied"));
        assert!(look_path(&format!("{d}/none"), None)
            .unwrap_err()
            .to_string()
            .contains("stat"));
    }

    #[test]
    fn an_id_is_mapped_inside_a_range_only() {
        let map = "         0     100000      65536\n";
        assert!(mapped(map, 0) && mapped(map, 65535));
        assert!(!mapped(map, 65536));
        assert!(mapped("0 0 4294967295\n", 1000));
    }
}
