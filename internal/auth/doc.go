// Package auth authenticates users and authorizes every identity: the password store
// ([Users]), login throttling ([Throttle]), the role-based topic policy ([Policy], [Policies]) and
// client id binding ([ResolveClientID]).
//
// It imports only vitalmq/internal/topic and vitalmq/internal/pki, does not log and keeps secrets
// out of its errors; the composition root adapts it to the broker's Authenticator and Authorizer
// and audits its decisions.
//
// # Identities and roles
//
//	device     a monitoring device; authenticated by its client certificate (SAN URI
//	           "urn:vitalmq:device:<id>", see package pki), never by password
//	clinician  a clinician application (dashboard, nurse station); password
//	service    the hub and integrations (EHR bridge, alerting); password
//	admin      operators; password
//
// # Topic scheme
//
// No patient identifier ever appears in a topic: devices have opaque ids, and the device→patient
// link lives in the hub, not in the broker.
//
//	dev/<device>/...   telemetry a device publishes (e.g. dev/bed-12-hr/vitals/hr, dev/<device>/status)
//	cmd/<device>       commands to one device (exactly this topic; no subtree)
//	alert/...          alerts raised by services
//	$SYS/...           broker statistics, admin only
//
// # Default policy
//
//	role       publish              subscribe
//	device     dev/{device}/#       cmd/{device}        (no wildcards in its filters)
//	clinician  (nothing)            dev/#, alert/#
//	service    cmd/+, alert/#       dev/#, alert/#
//	admin      #                    #, $SYS/#
//
// Templates ({device}, {client_id}, {username}) fill a whole level and are replaced only by a
// value that is a safe level: for {device} a valid device id, otherwise non-empty valid UTF-8
// without '+', '#', '/', U+0000 or a leading '$'. Any other value makes the pattern match nothing,
// so an identity "+" or "#" cannot widen a rule (CASES T25). Decisions:
//
//   - CanPublish (PUBLISH, will topics, resolved topic aliases): a publish pattern matches the name.
//   - CanSubscribe: a subscribe pattern covers the whole filter (topic.Covers), the inner filter for
//     a shared subscription; a filter wider than what the role may read is refused, never
//     narrowed (T48, T49, T51). A device may not use '+' or '#' at all.
//   - CanReceive (every delivery, retained and queued messages included): a subscribe pattern
//     matches the name.
//   - Names and filters starting with '$' are for the admin role only, whatever the rules say
//     (ParsePolicy refuses such patterns for other roles) (T50, T63).
//   - An unknown role, or nothing matching, is denied; this is not configurable. A policy without
//     rules denies everything (T89). [Policies.Reload] keeps the old policy when the new one
//     cannot be loaded or parsed (T91).
//
// # Client ids
//
// A device's client id is its device id (an empty one is assigned it). A user's client id is
// "<user name>:<suffix>" (an empty one is assigned "<user name>:<random>"). Device ids and user
// names contain no ':', so no identity can take over or resume another identity's session by
// choosing its client id (T26, T27).
//
// # Passwords
//
// users.json (mode 0600; the store refuses a file that group or others can read) holds, per user,
// the name, role, argon2id hash as a PHC string ("$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>")
// and the creation and update times. Writers flock "users.json.lock", re-read the file and replace
// it atomically (temporary file, fsync, rename), so the broker and the `vitalmq user` CLI can both
// write; the broker calls [Users.Reload] to pick up the CLI's changes (a failed reload keeps the
// previous users).
//
// User names are 1 to 64 characters of [a-z0-9._-] starting with a letter or digit (no '+', '#',
// '/', U+0000, no upper case: safe in a {username} template and not spoofable by case).
//
// Passwords are at least 12 characters and at most 1024 bytes, with no composition rules. Twelve
// is OWASP ASVS's minimum (V2.1.1) and within NIST SP 800-63B's guidance that length, not
// character classes, is what resists guessing; a shorter password is within reach of an offline
// attack on a stolen users.json even with argon2id, and online guessing is throttled separately.
// The cap bounds the work an attacker can make one hash do. [Users.BootstrapAdmin] generates a
// 24-character password (about 140 bits) for the first admin.
//
// argon2id parameters ([DefaultParams]): m = 19 MiB, t = 2, p = 1, 16-byte salt, 32-byte key,
// the first of OWASP's recommended configurations. More memory (the RFC 9106 64 MiB or 2 GiB
// profiles) would be paid on every password CONNECT, on 2-core hospital machines, and would let
// a burst of CONNECTs exhaust memory; 19 MiB keeps a login around a few tens of milliseconds while
// still costing an offline attacker 19 MiB per guess. They are an [Option] so tests use cheap ones,
// and a stored hash is verified with its own parameters (bounded to at most 1 GiB and t ≤ 64, so a
// tampered file cannot take the broker down).
//
// [Users.Verify] compares in constant time and does the same work for an unknown user as for a
// known one: it derives exactly one key per call, against a dummy credential when the name matches
// no user, and returns the same error for both (T31).
//
// # Throttling
//
// [Throttle] counts failed logins per user name and per source address (pass limiter.SourceKey of
// the remote address, so an IPv6 /64 counts once): 10 failures within 1 minute lock the key out
// for 1 minute, the next lock-out of the same key lasts 2, then 4, 8 and at most 15 minutes; a key
// quiet for an hour is forgotten. During a lock-out every attempt is refused, the correct password
// included (T31). A success forgets the user name's record, not the address's. At most 10,000
// user names and 10,000 addresses are tracked (LRU). Note that per-user lock-out lets anyone
// delay one user's logins by up to 15 minutes at a time; that is the accepted price of stopping
// distributed guessing at one account.
package auth
