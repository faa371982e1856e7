use super::*;
use serde_json::json;

#[test]
fn message_line_is_compact() {
    let m = json!({"id":"X","ts":3661.5,"from":"a.b","ch":"general","type":"msg.data",
                   "body":{"n":1},"files":["sha256:00"],"reply_to":null});
    assert_eq!(
        message(&m, false),
        "01:01:01 X a.b · general · msg.data · {\"n\":1} [1 file]"
    );
}

#[test]
fn text_bodies_show_as_their_text_and_colour_is_optional() {
    let m = json!({"ts":0.0,"from":"a.b","ch":"g","type":"msg.text","body":{"text":"hi there"}});
    assert_eq!(message(&m, false), "00:00:00 a.b · g · msg.text · hi there");
    let coloured = message(&m, true);
    assert!(coloured.contains("\x1b[1;36ma.b\x1b[0m"), "{coloured:?}");
    assert!(coloured.ends_with("hi there"));
}

#[test]
fn agent_lines_list_channels_and_meta_in_columns() {
    let rows = [
        json!({"agent_id":"w.a","channels":["jobs","general"],"meta":{"jobs":2}}),
        json!({"agent_id":"summarizer.alice","channels":[]}),
    ];
    assert_eq!(
        agent_table(&rows),
        [
            "w.a               seen ?  jobs,general  {\"jobs\":2}",
            "summarizer.alice  seen ?  -",
        ]
    );
}

#[test]
fn lock_lines_never_count_below_zero() {
    let lock = json!({"name":"src/a.rs","holder":"coder.a","ch":"locks","expires_at":1.0});
    let other = json!({"name":"b","holder":"c","ch":"l","expires_at":1.0,"note":"n"});
    assert_eq!(
        lock_table(&[lock, other]),
        [
            "src/a.rs  held by coder.a  0s left  [locks]",
            "b         held by c        0s left  [l]      n",
        ]
    );
}

#[test]
fn task_events_show_their_task_and_title() {
    let m = json!({"ts":0.0,"from":"a.b","ch":"tasks","type":"task.created",
                   "body":{"task-id":"T1","title":"resize","note":"big"}});
    assert_eq!(
        message(&m, false),
        "00:00:00 a.b · tasks · task.created · T1 · resize · big"
    );
}

#[test]
fn long_bodies_are_cut_on_a_char_boundary() {
    let long = "é".repeat(500);
    let cut = truncate(&long, 10);
    assert_eq!(cut.chars().count(), 11);
    assert!(cut.ends_with('…'));
}

#[test]
fn what_agents_wrote_reaches_a_terminal_without_its_escape_sequences() {
    let hostile = "\x1b]0;pwned\x07\x1b[2Jhi\u{202e}gnp.exe\u{9b}";
    let m = json!({"ts":0.0,"from":"a\x1bb","ch":"c","type":"t","body":{"text":hostile}});
    for colour in [false, true] {
        let line = message(&m, colour);
        let text: String = line.replace("\x1b[0m", "").replace("\x1b[", "CSI");
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{line:?}");
        assert!(
            !text.contains('\u{202e}') && !text.contains('\u{9b}'),
            "{line:?}"
        );
    }
    assert_eq!(
        printable(hostile),
        r"\u{1b}]0;pwned\u{7}\u{1b}[2Jhi\u{202e}gnp.exe\u{9b}"
    );
    assert_eq!(printable("two\nlines\tand tab"), "two lines and tab");
    let task = json!({"id":"T","status":"open","title":"x\x1b[31m","ch":"c","priority":0,
                      "attempts":0,"max_attempts":5,"created_at":0.0});
    assert!(task_table(&[task], 0.0).iter().all(|l| !l.contains('\x1b')));
    let lock = json!({"name":"n","holder":"h","ch":"c","note":"\x1b[2J","expires_at":0.0});
    assert!(lock_table(&[lock]).iter().all(|l| !l.contains('\x1b')));
    let agent = json!({"agent_id":"a","channels":[],"meta":"\x1b[2J"});
    assert!(agent_table(&[agent]).iter().all(|l| !l.contains('\x1b')));
}

#[test]
fn task_table_aligns_columns() {
    let tasks = [
        json!({"id":"T1","status":"claimed","claimed_by":"w","assigned_to":null,"ch":"tasks",
               "title":"do it","priority":5,"attempts":1,"max_attempts":5,"created_at":100.0}),
        json!({"id":"T22","status":"open","claimed_by":null,"assigned_to":"bob","ch":"jobs",
               "title":"resize","priority":0,"attempts":0,"max_attempts":3,"created_at":0.0}),
    ];
    let lines = task_table(&tasks, 4000.0);
    assert_eq!(
        lines[0],
        "ID   STATUS   PRI  TRIES  AGE  WHO      CH     TITLE"
    );
    assert_eq!(
        lines[1],
        "T1   claimed  5    1/5    1h   by w     tasks  do it"
    );
    assert_eq!(
        lines[2],
        "T22  open     0    0/3    1h   for bob  jobs   resize"
    );
    assert_eq!(age(59.0), "59s");
    assert_eq!(age(3.0 * 86_400.0), "3d");
}
