//! `/debug/group` as JSON, written by hand: the shape is small and fixed.

use std::fmt::Write;

use crate::{MemberState, MemberStatus, StageStatus, Status, Stop};

/// `{"ready":…,"stopping":…,"profiling":…,"cause":…,"members":[{"name":…,"state":…,"outcome":…,"uptime_ms":…,"stage":…,"restarts":…,"last_error":…,"next_attempt_ms":…}],"stages":[{"stage":…,"began_ms":…,"ended_ms":…}]}`
///
/// `stop`, the signal of the routes' server, is the authority on whether
/// the group is stopping: the status hears of the stop a moment later,
/// from the group's run loop.
pub(crate) fn group(status: &Status, stop: &Stop, profiling: bool) -> String {
    let mut out = String::from("{");
    let cause = status.cause().or_else(|| stop.cause().cloned());
    let ready = status.is_ready() && !group_stopping(stop);
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
    write_members(&mut out, &status.members(), cause.is_some());
    out.push_str("],\"stages\":[");
    write_stages(&mut out, &status.stages());
    out.push_str("]}\n");
    out
}

/// Appends the members' objects, separated by commas; `stop_began` when
/// the group's stop has begun.
fn write_members(out: &mut String, members: &[MemberStatus], stop_began: bool) {
    // The first stage stops with the group: until the status hears of it,
    // its members are shown stopping from the server's stop.
    let first = members.iter().map(|m| m.stage).min();
    for (i, member) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let stopping = stop_began && Some(member.stage) == first;
        write_member(out, member, stopping);
    }
}

/// Appends one member's object; `stopping` when its stage's stop has begun
/// though the status may not know it yet.
fn write_member(out: &mut String, member: &MemberStatus, stopping: bool) {
    out.push_str("{\"name\":");
    string(out, &member.name);
    out.push_str(",\"state\":");
    let state = match &member.state {
        // Still running when the stop began: stopping.
        MemberState::Running if stopping => MemberState::Stopping.as_str(),
        state => state.as_str(),
    };
    string(out, state);
    out.push_str(",\"outcome\":");
    match &member.state {
        MemberState::Exited(exit) => string(out, &exit.to_string()),
        MemberState::Cancelled => string(out, "cancelled"),
        _ => out.push_str("null"),
    }
    let _ = write!(
        out,
        ",\"uptime_ms\":{},\"stage\":",
        member.uptime.as_millis()
    );
    string(out, &member.stage.to_string());
    let _ = write!(out, ",\"restarts\":{},\"last_error\":", member.restarts);
    match &member.last_error {
        Some(error) => string(out, error),
        None => out.push_str("null"),
    }
    match member.next_attempt {
        Some(next) => write!(out, ",\"next_attempt_ms\":{}}}", next.as_millis()),
        None => write!(out, ",\"next_attempt_ms\":null}}"),
    }
    .ok();
}

/// Appends the stages' objects, separated by commas.
fn write_stages(out: &mut String, stages: &[StageStatus]) {
    for (i, stage) in stages.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"stage\":");
        string(out, &stage.stage.to_string());
        for (key, at) in [("began_ms", stage.began), ("ended_ms", stage.ended)] {
            match at {
                Some(at) => write!(out, ",\"{key}\":{}", at.as_millis()),
                None => write!(out, ",\"{key}\":null"),
            }
            .ok();
        }
        out.push('}');
    }
}

/// Whether the group of the request's server is stopping: its own stop may
/// come later, in a later stage, but the cause is the group's as soon as
/// the stop begins.
pub(crate) fn group_stopping(stop: &Stop) -> bool {
    stop.is_stopped() || stop.cause().is_some()
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
