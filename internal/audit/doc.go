// Package audit keeps vitalmq's audit trail: an append-only, hash-chained, tamper-evident log
// of connects, authentication failures, ACL denials, enrolments, revocations, kicks, admin
// actions and configuration changes. It imports only the standard library and logs nothing.
//
// # What is in it, and what never is
//
// An Event is a type ("auth.failure", see the Type constants) and string fields whose names
// come from a closed allow-list (AllowedFields: client_id, username, device, remote, listener,
// topic, topic_filter, reason, actor, action, serial, count, role, setting, protocol). Append
// refuses any other name with ErrFieldNotAllowed, so a password, token, key or payload cannot
// go in by accident under a name like "password" or "payload"; the "audit." type namespace is
// reserved for the package's own records. Topics hold opaque device ids, never patient
// identifiers, so no field carries PHI. What a client sent is never refused (refusing would let
// a client keep its own attempt out of the log): values are escaped (backslash, control and
// text-direction characters, invalid UTF-8) and capped at MaxValueLen bytes. One residual risk
// stays with the caller: a user who types a password into the username box puts it in the
// username field of an auth.failure.
//
// # Format
//
// The log is one file of JSON Lines, mode 0600, one record a line:
//
//	{"seq":7,"time":"2025-01-02T03:04:05.123456789Z","type":"auth.failure","remote":"10.0.0.9:51234","username":"nurse1","reason":"bad_password","prev":"<64 hex>","mac":"<64 hex>"}
//
// seq counts from 1 with no gaps; time is RFC 3339 UTC; the fields sit between type and prev,
// sorted by name. The encoding is canonical (fixed member order, no spaces, one escaping), and
// mac = HMAC-SHA256(key, "vitalmq-audit-v1\x00record\x00" || the line up to and excluding
// `,"mac":…`, closed with "}"), so the MAC covers the exact bytes. prev is the previous record's
// mac; record 1 (type audit.log_created, or audit.chain_broken after an incident) carries a
// random log_id and its prev is HMAC(key, "…genesis…" || log_id). The key is a per-installation
// 32-byte secret in its own file (created 0600 on first Open, refused if group or others may
// read it), so whoever can edit the log but not read the key cannot forge, edit, insert or
// renumber records without Verify seeing it. A plain hash chain would not do: anyone can
// recompute SHA-256.
//
// Deleting records from the end leaves a valid chain, so a head file next to the log
// (HeadPath: path + ".head") holds the log id and the seq and mac of the last record, itself
// MACed, and is replaced atomically (a synced temporary file renamed over it) after every
// batch. Verify compares the end of the log with it. A head that lags the log (a crash between
// the log sync and the head rename) is harmless and only noted; one ahead of the log is
// truncation. What the log and head cannot show on their own is both being replaced by an
// older copy, or both deleted: for that, copy Log.Head now and then to somewhere the broker
// host cannot rewrite (remote syslog, the hub) and compare.
//
// # Writing
//
// Append is safe for concurrent use and durable: it returns after its record is written with
// one write(2), fsync'd and named by the head, so a client that crashes the broker cannot erase
// the record of its attempt. Appends that arrive while a sync is in progress are batched into
// the next write and sync (group commit), so a burst of failed logins costs a few syncs, not
// one each. After a write or sync error the Log fails every later Append rather than leave a
// hole in the chain; restarting re-verifies and resumes.
//
// # Opening, verifying, and after an incident
//
// Open verifies the whole existing log (linear in its size) before appending, then continues
// the chain; it never extends a chain it could not verify. It refuses, with an error wrapping
// ErrIntegrity that says where, any log Verify would fail, with one exception: an incomplete
// final line after records that match the head is what a crash in the middle of a write
// leaves, so Open cuts it off and records audit.tail_repaired with the byte count. A missing
// key next to an existing log is refused (ErrKeyMissing) rather than replaced.
//
// Verify reports every problem with its place and likely cause, for example
//
//	line 7: mac mismatch (record edited or forged, or wrong key)
//	line 9: seq 10 after 8 (record 9 deleted)
//	line 5: seq 6, want 5 (record 5 later in the log: records reordered)
//	end: log ends at seq 41 but head says 42 (truncated)
//	head: mac mismatch (head file edited, or wrong key)
//
// together with the record count and the first and last times (Report).
//
// When Open refuses a log, an operator who has kept the evidence calls OpenAfterIncident with
// who decides and why: it renames the log and head to path.broken-<time> (still verifiable
// there) and starts a new log whose first record, audit.chain_broken, names the archive, the
// old log id and the first problem. The broker never does this by itself.
//
// # Out of scope
//
// Rotation: the log grows without bound and Open's verification with it. A later rotation
// would close a segment and start the next with its predecessor's last mac. Only one Log per
// path may be open in a process (ErrAlreadyOpen); two processes on one data directory are not
// guarded against.
package audit
