package session

import "time"

// Meta is the durable part of a session besides its subscriptions and entries.
type Meta struct {
	ClientID string
	// Username and Attrs are the identity the session's messages are authorized for.
	Username       string
	Attrs          map[string]string
	Anonymous      bool
	ExpiryInterval uint32
	// ExpireAt is when the offline session ends; zero while a client is connected.
	ExpireAt time.Time
	// Will is the will of the session's connection (or a pending delayed will).
	Will       *Message
	WillDelay  uint32
	WillExpiry uint32 // the will's Message Expiry Interval, counted from its publication
	// Gen is the session's incarnation, new at every Clean Start: an entry stored for an
	// earlier session with the same client id (a publication racing the Clean Start) is
	// not restored into this one.
	Gen uint64
	// SentThrough: entries up to this Seq may have reached the client (on a connection
	// live when this was written: all of them), so they are re-sent with DUP set.
	SentThrough uint64
}

// Stored is a session as a persister returns it at load.
type Stored struct {
	Meta        Meta
	Subs        []Subscription
	Entries     []StoredEntry // in Seq order
	AwaitingRel []uint16
}

// StoredEntry is an entry with whether it had been sent (acknowledged with PUBREC) and the
// session incarnation it was stored for.
type StoredEntry struct {
	Entry
	Sent bool
	Gen  uint64
}

// Snapshot is the whole durable broker state.
type Snapshot struct {
	Sessions []Stored
	Retained []*Message
}

// OpKind says what an Op changes.
type OpKind uint8

// Kinds of change.
const (
	PutMeta        OpKind = iota + 1 // Meta
	DeleteSession                    // ClientID: the session and everything under it
	PutSub                           // ClientID, Sub
	DeleteSub                        // ClientID, Sub.Filter
	PutEntry                         // ClientID, Entry, Sent, Gen
	DeleteEntry                      // ClientID, Entry.Seq
	PutAwaitRel                      // ClientID, PacketID
	DeleteAwaitRel                   // ClientID, PacketID
	PutRetained                      // Msg
	DeleteRetained                   // Topic
)

// Op is one change to the durable state.
type Op struct {
	Kind     OpKind
	ClientID string
	Meta     Meta
	Sub      Subscription
	Entry    Entry
	Sent     bool
	Gen      uint64 // PutEntry: Meta.Gen of the session the entry belongs to
	PacketID uint16
	Msg      *Message
	Topic    string
}

// ChangeSet is a list of changes applied atomically, in order.
type ChangeSet struct {
	Ops []Op
	// Lazy change sets need not be synced on their own: a crash may lose them, and they are
	// durable once any later change set is (the persister keeps their order). Only for
	// changes whose loss is harmless: deleting a completed entry (it would be re-sent as
	// DUP, or resumed with PUBREL, which the client answers).
	Lazy bool
}

// Add appends an op.
func (c *ChangeSet) Add(op Op) { c.Ops = append(c.Ops, op) }

// Empty reports whether there is nothing to apply.
func (c *ChangeSet) Empty() bool { return c == nil || len(c.Ops) == 0 }
