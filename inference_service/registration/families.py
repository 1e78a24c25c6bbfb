"""Which base-model families registration can generate references for, and with which checkpoint.

The generator runs SD 1.x and SDXL pipelines. A LoRA of a derivative family (Pony, Illustrious,
NoobAI, Playground on SDXL) loads on those pipelines but shows its style only on its own
checkpoint, so references generated on SDXL base would misrepresent it: such a family registers
only when settings.derivative_base_models names its checkpoint, and is refused by name otherwise.
"""

from __future__ import annotations

from findlora_client.base_models import BY_ID, architecture, display_name, resolve
from inference_service.config import Settings
from inference_service.registration.refusals import LoraFileRejected

GENERATOR_ARCHITECTURES = ("sd1", "sdxl")  # the pipelines TransferGenerator runs


def derivative_checkpoints(settings: Settings) -> dict[str, str]:
    """settings.derivative_base_models under canonical ids (any spelling may be configured)."""
    return {resolve(family).id: checkpoint for family, checkpoint in settings.derivative_base_models.items()}


def generator_family(family: str, settings: Settings) -> str:
    """The family whose pipeline renders this family's references (itself), after checking that one
    can; a LoraFileRejected naming the family otherwise."""
    arch = architecture(family)
    name = f"{display_name(family)} ({family})"
    if arch not in GENERATOR_ARCHITECTURES:
        raise LoraFileRejected(
            f"this is a {name} LoRA: references are generated only for SD 1.x and SDXL-based "
            "families (sd1, sdxl and configured derivatives), so it cannot be registered here"
        )
    if family == arch or family in derivative_checkpoints(settings):
        return family
    parent = BY_ID[arch].name
    raise LoraFileRejected(
        f"this is a {name} LoRA: it loads on {parent} but shows its style only on {display_name(family)} "
        f"checkpoints, and none is configured for generating references (an operator sets "
        f'FINDLORA_DERIVATIVE_BASE_MODELS=\'{{"{family}": "<hub id or directory>"}}\')'
    )


def generator_models(settings: Settings, family: str) -> tuple[str, str]:
    """(base checkpoint, ControlNet) of a family generator_family accepted."""
    parents = {
        "sd1": (settings.sd1_base_model, settings.sd1_controlnet),
        "sdxl": (settings.sdxl_base_model, settings.sdxl_controlnet),
    }
    arch = architecture(family)
    if arch not in parents:
        raise KeyError(family)
    base, controlnet = parents[arch]
    if family != arch:
        base = derivative_checkpoints(settings)[family]
    # A derivative shares its parent's ControlNet: same UNet blocks, same conditioning widths.
    return base, controlnet


def registered_family(declared: str, detected: str | None) -> tuple[str, str]:
    """(family, warning) of a LoRA being registered, from the canonical id the moderator declared
    ('' for none) and the one the file tells. A file names only the architecture of an SDXL-shaped
    LoRA (kohya writes sdxl_base_v1-0 for Pony too), so a declared derivative of the detected
    architecture wins; a declared name outside the vocabulary yields to the file, with a warning;
    any other disagreement is refused."""
    if detected and declared and declared != detected:
        if architecture(declared) == detected:
            return declared, ""
        if architecture(declared) is None:
            return detected, f"base model {declared!r} is not a known family: the file says {detected}"
        raise LoraFileRejected(
            f"the file is a {display_name(detected)} ({detected}) LoRA, not {display_name(declared)} "
            f"({declared}) as requested"
        )
    family = detected or declared
    if not family:
        raise LoraFileRejected(
            "the file does not tell its base model (no known shapes or metadata): give it explicitly"
        )
    return family, ""
