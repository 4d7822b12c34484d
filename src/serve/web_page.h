#pragma once
// The chat page `lora serve` shows at "/": one self-contained HTML file (no framework, nothing fetched
// from elsewhere) compiled into the binary. It lists the models at /v1/models, streams replies from
// /v1/chat/completions, and keeps the parameters and API key in the browser's local storage.
//
// Opening "/?model=NAME&message=TEXT" selects the model and sends the message at once (for scripts and
// the browser test).
namespace lora::serve {

const char* web_page_html();

}  // namespace lora::serve
