/**
 * An ERROR reply, which any op may get: its stable code and message, turned
 * back into the error class the code stands for (codes this version does not
 * know are E_INTERNAL).
 */
import { CacheError, ClosedError, ErrorCodes, NotANumberError } from '../../errors.js'
import type { ErrorCode } from '../../errors.js'
import type { FrameReader } from '../../wire/protocol.js'

/** An ERROR reply's error (the status byte was read). */
export function readErrorReply(r: FrameReader): CacheError {
  const code = r.string()
  const message = r.string()
  return toError(code, message)
}

const KNOWN_CODES = new Set<string>(Object.values(ErrorCodes))

function toError(code: string, message: string): CacheError {
  if (code === ErrorCodes.CLOSED) return new ClosedError(message)
  if (code === ErrorCodes.NOT_A_NUMBER) return new NotANumberError(message)
  return new CacheError((KNOWN_CODES.has(code) ? code : ErrorCodes.INTERNAL) as ErrorCode, message)
}
