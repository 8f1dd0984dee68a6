package sqlstore

import (
	"encoding/json"

	"github.com/idflow/idflow"
)

// EncodeDefinition answers the JSON text a store keeps for def (steps never
// null) and the definition as it will read back. A step's Args that is not
// valid JSON is EINVALID.
func EncodeDefinition(def idflow.Definition) (string, idflow.Definition, error) {
	if def.Steps == nil {
		def.Steps = []idflow.Step{}
	}
	b, err := json.Marshal(def)
	if err != nil {
		return "", def, idflow.WrapError(idflow.EINVALID, "invalid workflow definition", err)
	}
	def, err = DecodeDefinition(string(b))
	return string(b), def, err
}

// DecodeDefinition reads a stored definition; steps are never nil.
func DecodeDefinition(s string) (idflow.Definition, error) {
	var def idflow.Definition
	if err := json.Unmarshal([]byte(s), &def); err != nil {
		return def, err
	}
	if def.Steps == nil {
		def.Steps = []idflow.Step{}
	}
	return def, nil
}
