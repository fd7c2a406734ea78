// multipart/form-data, as far as POST upload_team_config needs it (the MACAE
// UIs send the team file as the form field "file"): the content of one
// named part. Bounded by the body it is given (the session caps bodies).
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"

namespace agentd::net {

// The boundary parameter of a "multipart/form-data; boundary=..." content
// type; kInvalidArgument when the type is not that or has no boundary.
Result<std::string> multipart_boundary(std::string_view content_type);

// The body of the part whose Content-Disposition names `field`;
// kInvalidArgument naming what is wrong (no such part, malformed framing).
Result<std::string> multipart_field(std::string_view body, std::string_view boundary, std::string_view field);

}  // namespace agentd::net
