//! The change matrix shared by the snapshot and round-trip tests: RUN commands over the
//! [`super::base`] stack and the change set each must give.

/// (name, command, expected change set as rendered by [`super::render`])
pub const MATRIX: &[(&str, &str, &str)] = &[
    ("nothing", "true", ""),
    ("create", "echo hi > /data/new", "M data\nA data/new\n"),
    ("modify", "echo more >> /data/file", "M data/file\n"),
    ("chmod", "chmod 600 /data/file", "M data/file\n"),
    ("chown", "chown 1000:1000 /data/file", "M data/file\n"),
    ("delete_file", "rm /data/file", "M data\nD data/file\n"),
    (
        "delete_lower_layer_file",
        "rm /data/top",
        "M data\nD data/top\n",
    ),
    ("rm_rf_dir", "rm -rf /data/dir", "M data\nD data/dir\n"),
    (
        "rm_rf_then_mkdir",
        "rm -rf /data/dir && mkdir /data/dir",
        "M data\nM data/dir\nO data/dir\n",
    ),
    (
        "rm_rf_then_refill",
        "rm -rf /data/dir && mkdir /data/dir && echo c > /data/dir/c",
        "M data\nM data/dir\nA data/dir/c\nO data/dir\n",
    ),
    (
        "mv_dir",
        "mv /data/dir /data/moved",
        "M data\nD data/dir\nA data/moved\nA data/moved/a\nA data/moved/sub\nA data/moved/sub/b\n",
    ),
    (
        "file_replaced_by_dir",
        "rm /data/file && mkdir /data/file",
        "M data\nM data/file\n",
    ),
    (
        "dir_replaced_by_file",
        "rm -rf /data/dir && echo f > /data/dir",
        "M data\nM data/dir\n",
    ),
    (
        "file_to_dir_and_back",
        "rm /data/file && mkdir /data/file && rmdir /data/file && echo back > /data/file",
        "M data\nM data/file\n",
    ),
    ("symlink", "ln -s file /data/sym", "M data\nA data/sym\n"),
    (
        "hardlink",
        "ln /data/file /data/hard",
        "M data\nM data/file\nA data/hard\n",
    ),
    (
        "setfattr",
        "setfattr -n user.rbuild -v 1 /data/file",
        "M data/file\n",
    ),
    (
        "setcap",
        "setcap cap_net_raw+ep /data/file",
        "M data/file\n",
    ),
    ("mkfifo", "mkfifo /data/fifo", "M data\nA data/fifo\n"),
    (
        "mkdir_tree",
        "mkdir -p /new/a/b && echo x > /new/a/b/x",
        "A new\nA new/a\nA new/a/b\nA new/a/b/x\n",
    ),
    ("touch_etc", "touch /etc/newfile", "M etc\nA etc/newfile\n"),
    (
        "edit_passwd",
        "echo x:x:5:5::/:/bin/sh >> /etc/passwd",
        "M etc/passwd\n",
    ),
    (
        "read_only_use_of_mounts",
        "cat /etc/hosts /proc/self/status > /dev/null && ls /sys /dev",
        "",
    ),
];
