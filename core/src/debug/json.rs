//! `/debug/group` as JSON, written by hand: the shape is small and fixed.

use std::fmt::Write;

use crate::{MemberState, Status, Stop};

/// `{"ready":…,"stopping":…,"profiling":…,"cause":…,"members":[{"name":…,"state":…,"outcome":…,"uptime_ms":…}]}`
///
/// `stop`, the group's own signal when the request came through allstop's
/// server, is the authority on whether the group is stopping: the status
/// hears of the stop a moment later, from the group's run loop.
pub(crate) fn group(status: &Status, stop: Option<&Stop>, profiling: bool) -> String {
    let mut out = String::from("{");
    let cause = status
        .cause()
        .or_else(|| stop.and_then(Stop::cause).cloned());
    let ready = status.is_ready() && !stop.is_some_and(Stop::is_stopped);
    let _ = write!(
        out,
        "\"ready\":{ready},\"stopping\":{},\"profiling\":{profiling},\"cause\":",
        cause.is_some()
    );
    match &cause {
        Some(cause) => string(&mut out, &cause.to_string()),
        None => out.push_str("null"),
    }
    out.push_str(",\"members\":[");
    for (i, member) in status.members().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        string(&mut out, &member.name);
        out.push_str(",\"state\":");
        let state = match &member.state {
            // Still running when the stop began: stopping.
            MemberState::Running if cause.is_some() => MemberState::Stopping.as_str(),
            state => state.as_str(),
        };
        string(&mut out, state);
        out.push_str(",\"outcome\":");
        match &member.state {
            MemberState::Exited(outcome) => string(&mut out, outcome),
            MemberState::Cancelled => string(&mut out, "cancelled"),
            _ => out.push_str("null"),
        }
        let _ = write!(out, ",\"uptime_ms\":{}}}", member.uptime.as_millis());
    }
    out.push_str("]}\n");
    out
}

/// Appends `value` as a JSON string.
fn string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    #[test]
    fn strings_are_escaped() {
        let mut out = String::new();
        super::string(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
    }
}
