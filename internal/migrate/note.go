package migrate

import "fmt"

// Level says how much of an object a note costs.
type Level string

const (
	// Error: the object (or the named field's value) was not converted at all.
	Error Level = "error"
	// Warning: converted, but the named field has no equivalent or changes meaning.
	Warning Level = "warning"
	// Info: converted exactly; worth knowing.
	Info Level = "info"
)

// Note says what happened to one object or field.
type Note struct {
	Level   Level  `json:"level"`
	Object  string `json:"object"`          // the MetalLB object: "BGPPeer metallb-system/tor"
	Field   string `json:"field,omitempty"` // its field: "spec.bfdProfile"
	Message string `json:"message"`
}

func (n Note) String() string {
	if n.Field == "" {
		return fmt.Sprintf("%s: %s: %s", n.Level, n.Object, n.Message)
	}
	return fmt.Sprintf("%s: %s: %s: %s", n.Level, n.Object, n.Field, n.Message)
}
