//! `${VAR}` references in configuration values: each is replaced by the variable's value, and
//! an unset variable is an error naming the key. `$${` stands for a literal `${`.

use super::{ConfigError, key_err};

/// Replaces `${VAR}` in every string value with the variable's value; an unset variable is an
/// error naming the key. `$${` stands for a literal `${`.
pub(super) fn expand_env(
    key: &str,
    v: &mut toml::Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match v {
        toml::Value::String(s) if s.contains('$') => *s = expand_str(key, s, env)?,
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_env(&format!("{key}[{i}]"), item, env)?;
            }
        }
        toml::Value::Table(t) => {
            for (k, item) in t.iter_mut() {
                expand_env(&format!("{key}.{k}"), item, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

pub(super) fn expand_str(
    key: &str,
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("$${") {
            out.push_str("${");
            rest = r;
        } else if let Some(r) = rest.strip_prefix("${") {
            let end = r
                .find('}')
                .ok_or_else(|| key_err(key, "unclosed ${ in value"))?;
            let name = &r[..end];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(key_err(key, format!("${{{name}}} is not a variable name")));
            }
            let value = env(name)
                .ok_or_else(|| key_err(key, format!("environment variable {name} is not set")))?;
            out.push_str(&value);
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}
