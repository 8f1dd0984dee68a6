package service

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/idflow/idflow"
)

// Limits on user input; the HTTP layer also bounds whole bodies.
const (
	MaxNameLen         = 200
	MaxDescriptionLen  = 4000
	MaxMessageLen      = 32 << 10
	MaxInstructionsLen = 16 << 10
	MaxFactLen         = 8 << 10
	MaxQueryLen        = 1000
	MaxTools           = 32
	MaxSteps           = 100
	MaxFilenameLen     = 255
	MaxStepWaitMs      = 10 * 60 * 1000
)

// text checks a required or optional text field.
func text(field, v string, max int, required bool) (string, error) {
	v = strings.TrimSpace(v)
	if required && v == "" {
		return "", idflow.Errorf(idflow.EINVALID, "%s is required", field)
	}
	if !utf8.ValidString(v) {
		return "", idflow.Errorf(idflow.EINVALID, "%s must be UTF-8 text", field)
	}
	if n := utf8.RuneCountInString(v); n > max {
		return "", idflow.Errorf(idflow.EINVALID, "%s is %d characters; the limit is %d", field, n, max)
	}
	if strings.ContainsRune(v, 0) {
		return "", idflow.Errorf(idflow.EINVALID, "%s must not contain NUL", field)
	}
	return v, nil
}

// optionalText checks a patch field.
func optionalText(field string, v *string, max int, required bool) (*string, error) {
	if v == nil {
		return nil, nil
	}
	t, err := text(field, *v, max, required)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// ValidateDefinition checks a workflow definition.
func ValidateDefinition(d idflow.Definition) error {
	if len(d.Steps) > MaxSteps {
		return idflow.Errorf(idflow.EINVALID, "a workflow has at most %d steps", MaxSteps)
	}
	seen := map[string]bool{}
	for i, st := range d.Steps {
		if st.ID == "" {
			return idflow.Errorf(idflow.EINVALID, "steps[%d].id is required", i)
		}
		if len(st.ID) > 64 {
			return idflow.Errorf(idflow.EINVALID, "steps[%d].id is too long", i)
		}
		if seen[st.ID] {
			return idflow.Errorf(idflow.EINVALID, "steps[%d].id %q is used twice", i, st.ID)
		}
		seen[st.ID] = true
		switch st.Type {
		case idflow.StepPrompt:
			if _, err := text(fmt.Sprintf("steps[%d].prompt", i), st.Prompt, MaxMessageLen, true); err != nil {
				return err
			}
		case idflow.StepMemorySearch:
			if _, err := text(fmt.Sprintf("steps[%d].query", i), st.Query, MaxQueryLen, true); err != nil {
				return err
			}
		case idflow.StepTool:
			if _, err := text(fmt.Sprintf("steps[%d].tool", i), st.Tool, MaxNameLen, true); err != nil {
				return err
			}
			if len(st.Args) > 64<<10 {
				return idflow.Errorf(idflow.EINVALID, "steps[%d].args is too large", i)
			}
		case idflow.StepWait:
			if st.Ms < 0 || st.Ms > MaxStepWaitMs {
				return idflow.Errorf(idflow.EINVALID, "steps[%d].ms must be within 0..%d", i, MaxStepWaitMs)
			}
		default:
			return idflow.Errorf(idflow.EINVALID, "steps[%d].type must be prompt, memory_search, tool or wait", i)
		}
	}
	return nil
}

func validTools(tools []string) ([]string, error) {
	if len(tools) > MaxTools {
		return nil, idflow.Errorf(idflow.EINVALID, "an agent has at most %d tools", MaxTools)
	}
	out := make([]string, 0, len(tools))
	for i, t := range tools {
		v, err := text(fmt.Sprintf("tools[%d]", i), t, MaxNameLen, true)
		if err != nil {
			return nil, err
		}
		// A name no tool can have is a mistake worth a 400; a well-formed
		// name the catalog does not (yet) offer the caller is kept and
		// simply not offered (docs/AGENTS.md).
		if !toolNameRE.MatchString(v) {
			return nil, idflow.Errorf(idflow.EINVALID, "tools[%d] %q is not a tool name ([A-Za-z0-9_-], at most 64 characters)", i, clipRunes(v, 80))
		}
		out = append(out, v)
	}
	return out, nil
}
