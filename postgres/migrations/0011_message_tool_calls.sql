-- Agent turns (docs/AGENTS.md) store tool calls and their results as
-- messages of the session:
--   tool_calls    an assistant message's calls: a JSON array of
--                 {id, name, arguments} (json keeps the text as the model
--                 sent it); NULL for any other message
--   tool_call_id  a tool message: the call it answers
--   name          a tool message: the tool that answered
ALTER TABLE messages ADD COLUMN tool_calls json;
ALTER TABLE messages ADD COLUMN tool_call_id text NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN name text NOT NULL DEFAULT '';
