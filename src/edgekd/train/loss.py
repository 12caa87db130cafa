"""KD losses. Hinton et al.: the soft term is scaled by T^2 so its gradients keep their size as T changes."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None,
            alpha: float, temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, labels).

    Returns (total, kd part, ce part), each already weighted, so the curves in the report add up to the total.
    Without labels (unlabelled calibration photos) the whole weight goes to the KD term; the caller records that.
    """
    t = float(temperature)
    log_p_student = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=-1)
    # kl_div(input=log q, target=log p, log_target=True) = sum p (log p - log q) = KL(p || q), batch-mean.
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    if labels is None:
        kd = kl * (t * t)
        return kd, kd, torch.zeros((), device=kd.device)
    kd = alpha * (t * t) * kl
    ce = (1.0 - alpha) * F.cross_entropy(student_logits.float(), labels)
    return kd + ce, kd, ce


def embedding_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> torch.Tensor:
    """Sentence-embedding students match the teacher's vector: 1 - cosine (direction) or MSE (direction and norm)."""
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(student.float(), teacher.float(), dim=-1)).mean()
    return F.mse_loss(student.float(), teacher.float())


def causal_lm_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, input_ids: torch.Tensor,
                      alpha: float, temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token-level KD for causal LMs: `kd_loss` on logits [B, T, V] flattened to B*T tokens (mean over tokens).

    The KD term covers every position (the teacher has a distribution for each); the optional CE term (alpha < 1)
    is next-token cross-entropy, the labels being the window itself shifted by one, so it covers T-1 positions.
    Returns (total, kd part, ce part) weighted like `kd_loss`.
    """
    vocab = student_logits.shape[-1]
    kd, _, _ = kd_loss(student_logits.reshape(-1, vocab), teacher_logits.reshape(-1, vocab), None, 1.0, temperature)
    if alpha >= 1.0:
        return kd, kd, torch.zeros((), device=kd.device)
    kd = alpha * kd
    ce = (1.0 - alpha) * F.cross_entropy(student_logits[:, :-1].reshape(-1, vocab).float(),
                                         input_ids[:, 1:].reshape(-1))
    return kd + ce, kd, ce
