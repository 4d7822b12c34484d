#pragma once
// An error answered to an API client the way OpenAI's API answers it: an HTTP status and
//   {"error": {"message": "...", "type": "invalid_request_error", "param": "temperature", "code": null}}
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace lora::serve {

struct ApiError : std::runtime_error {
  int status;
  std::string type, param, code;

  ApiError(int status, std::string message, std::string param = "", std::string code = "")
      : std::runtime_error(std::move(message)), status(status), type(type_for(status)), param(std::move(param)),
        code(std::move(code)) {}

  nlohmann::json to_json() const {
    const auto or_null = [](const std::string& s) { return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s); };
    return {{"error", {{"message", what()}, {"type", type}, {"param", or_null(param)}, {"code", or_null(code)}}}};
  }

  // OpenAI's error types by status.
  static std::string type_for(int status) {
    switch (status) {
      case 401: return "authentication_error";
      case 404: return "not_found_error";
      case 413: return "request_too_large";
      case 429: return "rate_limit_error";
      case 503: return "service_unavailable";
      default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
  }
};

}  // namespace lora::serve
