// ModelClient: chat completion against an OpenAI-compatible endpoint. The
// runtime (planner, LLM agents) depends only on this interface; net/ holds
// the HTTP implementation (net/llm_client.h), wired in main.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace agentd {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

struct ChatRequest {
  std::vector<ChatMessage> messages;
  bool stream = false;
  std::chrono::milliseconds timeout{60000};
};

// Called for each streamed token chunk (only when request.stream is true),
// with restart = false. When an attempt that already delivered chunks fails
// and the call is retried, the reply starts over: on_chunk("", true) comes
// first, and everything delivered before it is void (the retry may say
// something else). `done` always carries the text of the last attempt only.
using ChunkFn = std::function<void(std::string_view delta, bool restart)>;

class ModelClient {
 public:
  virtual ~ModelClient() = default;
  // Completes `done` exactly once with the full reply text, or an error
  // (kUnavailable for transport failures and 5xx after retries,
  // kInvalidArgument for 4xx and malformed replies).
  virtual void complete(ChatRequest req, ChunkFn on_chunk, std::function<void(Result<std::string>)> done) = 0;
};

}  // namespace agentd
