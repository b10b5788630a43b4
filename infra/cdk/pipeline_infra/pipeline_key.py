"""The pipeline's customer-managed KMS key, without `kms:ReEncrypt*` in any grant.

CDK's `Key.grant_encrypt_decrypt` (called by our code and by constructs such as
`secretsmanager.Secret(encryption_key=...)`, which grants Secrets Manager's use of the key) adds
`kms:ReEncrypt*`: re-encryption under another key, which nothing in this pipeline does and which
would let a grantee move data to a key of its choice. This key narrows that grant to what
encrypting and decrypting need; jsii dispatches CDK's own calls to the override too.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms

ENCRYPT_DECRYPT_ACTIONS = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*")


class PipelineKey(kms.Key):
    def grant_encrypt_decrypt(self, grantee: iam.IGrantable) -> iam.Grant:
        return self.grant(grantee, *ENCRYPT_DECRYPT_ACTIONS)
