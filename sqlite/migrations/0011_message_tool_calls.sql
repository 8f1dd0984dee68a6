-- Agent turns (docs/AGENTS.md) store tool calls and their results as
-- messages of the session:
--   tool_calls    an assistant message's calls: a JSON array of
--                 {id, name, arguments}; NULL for any other message
--   tool_call_id  a tool message: the call it answers
--   name          a tool message: the tool that answered
ALTER TABLE messages ADD COLUMN tool_calls TEXT;
ALTER TABLE messages ADD COLUMN tool_call_id TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN name TEXT NOT NULL DEFAULT '';
