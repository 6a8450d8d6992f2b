package config

// receiverKind is one kind of receiver: its YAML key, whether a Receiver
// has it set, and the checks of its block. Adding a receiver kind is a
// field on Receiver, an entry here, and an entry in package alert's table
// of the same names (alert.Build; a test there fails on a missing one).
type receiverKind struct {
	name     string
	set      func(r *Receiver) bool
	validate func(v *validator, r *Receiver, path string) // nil: nothing to check
}

// receiverKinds is the one list of receiver kinds, in the order error
// messages name them.
var receiverKinds = [...]receiverKind{
	{"alertmanager", func(r *Receiver) bool { return r.Alertmanager != nil },
		func(v *validator, r *Receiver, path string) { v.alertmanager(r.Alertmanager, path) }},
	{"webhook", func(r *Receiver) bool { return r.Webhook != nil },
		func(v *validator, r *Receiver, path string) { v.webhook(r.Webhook, path) }},
	{"log", func(r *Receiver) bool { return r.Log != nil }, nil},
}

// ReceiverKinds returns the names of the receiver kinds, as YAML keys.
func ReceiverKinds() []string {
	out := make([]string, len(receiverKinds))
	for i, k := range receiverKinds {
		out[i] = k.name
	}
	return out
}

// kinds lists the receiver kinds set on r.
func (r *Receiver) kinds() []string {
	var out []string
	for _, k := range receiverKinds {
		if k.set(r) {
			out = append(out, k.name)
		}
	}
	return out
}
