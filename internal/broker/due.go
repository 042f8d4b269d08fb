package broker

import "container/heap"

// dueHeap orders the offline sessions that have a deadline (a delayed will, or the end of
// the session) by the earliest one, so that the janitor visits only the sessions that are
// due instead of every session four times a second under Server.mu. Guarded by Server.mu.
//
// A session's place may be earlier than its deadlines (a will was taken meanwhile): the
// janitor checks again and puts it back at the next one. It is never later.
type dueHeap []*sess

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].dueIdx, h[j].dueIdx = i, j
}
func (h *dueHeap) Push(x any) {
	ss := x.(*sess)
	ss.dueIdx = len(*h)
	*h = append(*h, ss)
}
func (h *dueHeap) Pop() any {
	old := *h
	ss := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	ss.dueIdx = -1
	return ss
}

// scheduleLocked places ss in the janitor's heap at its earliest deadline, or takes it out
// when it has none (online, ended, or kept forever without a pending will). Called with
// s.mu and ss.mu held, or before the server serves.
func (s *Server) scheduleLocked(ss *sess) {
	at := ss.expireAt
	if ss.will != nil && !ss.willAt.IsZero() && (at.IsZero() || ss.willAt.Before(at)) {
		at = ss.willAt
	}
	switch {
	case at.IsZero() || ss.ended || ss.conn != nil:
		if ss.dueIdx >= 0 {
			heap.Remove(&s.due, ss.dueIdx)
		}
	case ss.dueIdx >= 0:
		ss.due = at
		heap.Fix(&s.due, ss.dueIdx)
	default:
		ss.due = at
		heap.Push(&s.due, ss)
	}
}
