// Every close and refusal in words, in the native viewer's wording (proto's
// ErrorCode::describe, client/src/viewer.rs), adapted to a page: where the native viewer says
// "pass --token", the page says "add ?token=... to the address".

import { ErrorCode, errorName } from "./codec.js";

/** A short phrase for a close or error code. */
export function describe(code: number): string {
  switch (code) {
    case ErrorCode.NoError:
      return "closed normally";
    case ErrorCode.UnsupportedVersion:
      return "the server speaks another protocol version: this page is older or newer than the server (reload it)";
    case ErrorCode.MalformedMessage:
      return "malformed message";
    case ErrorCode.UnexpectedMessage:
      return "unexpected message";
    case ErrorCode.UnknownRendition:
      return "unknown rendition";
    case ErrorCode.RateLimited:
      return "too many requests";
    case ErrorCode.ServerShuttingDown:
      return "server shutting down";
    case ErrorCode.Internal:
      return "internal server error";
    case ErrorCode.Timeout:
      return "timed out";
    case ErrorCode.TokenRequired:
      return "this server needs a token: add ?token=YOUR-TOKEN to the page's address";
    case ErrorCode.TokenInvalid:
      return "the server did not accept the token (check the ?token= in the page's address)";
    case ErrorCode.ServerFull:
      return "the server is full";
    case ErrorCode.AccessRevoked:
      return "your access was revoked (token withdrawn): ask the server's operator";
    default:
      return `unknown error code ${code}`;
  }
}

/** "TokenInvalid (10): the server did not accept the token ..." */
export function explain(code: number): string {
  return `${errorName(code)} (${code}): ${describe(code)}`;
}

/** Whether connecting again may help after the server refused or closed with `code`, as the
 * native viewer decides (client/src/net/connect.rs, worth_retrying): a server shutting down or
 * a rate limit may pass; a refusal on principle does not change by itself. */
export function worthRetrying(code: number): boolean {
  return code === ErrorCode.ServerShuttingDown || code === ErrorCode.RateLimited;
}
