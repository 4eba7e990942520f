// SPDX-FileCopyrightText: 2026 The Pion community <https://pion.ly>
// SPDX-License-Identifier: MIT

package srtp

import upstream "github.com/pion/srtp/v3"

// ProtectionProfile is upstream pion/srtp's type (this fork keeps it, so
// that profiles negotiated by pion/dtls and keys exported with upstream's
// Config pass to this package's contexts unchanged).
type ProtectionProfile = upstream.ProtectionProfile

// The protection profiles, as upstream names them.
const (
	ProtectionProfileAes128CmHmacSha1_80 = upstream.ProtectionProfileAes128CmHmacSha1_80
	ProtectionProfileAes128CmHmacSha1_32 = upstream.ProtectionProfileAes128CmHmacSha1_32
	ProtectionProfileAes256CmHmacSha1_80 = upstream.ProtectionProfileAes256CmHmacSha1_80
	ProtectionProfileAes256CmHmacSha1_32 = upstream.ProtectionProfileAes256CmHmacSha1_32
	ProtectionProfileNullHmacSha1_80     = upstream.ProtectionProfileNullHmacSha1_80
	ProtectionProfileNullHmacSha1_32     = upstream.ProtectionProfileNullHmacSha1_32
	ProtectionProfileAeadAes128Gcm       = upstream.ProtectionProfileAeadAes128Gcm
	ProtectionProfileAeadAes256Gcm       = upstream.ProtectionProfileAeadAes256Gcm
)
