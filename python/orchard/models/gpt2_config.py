"""GPT2Config with the field names of transformers' GPT2Config."""
import dataclasses
import json


@dataclasses.dataclass
class GPT2Config:
    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None  # generate's default stop tokens
    pad_token_id: int | None = None  # generate's default filler of finished rows
    use_flash: bool = True  # Orchard only: causal FlashAttention instead of a masked softmax

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")

    @classmethod
    def from_dict(cls, fields):
        """Keeps the fields Orchard uses; transformers' config.json has many more."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in fields.items() if k in names})

    @classmethod
    def from_json_file(cls, path):
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def to_hf_dict(self):
        """A config.json that transformers' GPT2LMHeadModel.from_pretrained reads."""
        fields = dataclasses.asdict(self)
        fields.pop("use_flash")
        return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
                "n_inner": None, "tie_word_embeddings": True,
                "scale_attn_weights": True, **fields}
