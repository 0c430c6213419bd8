"""Training checkpoints: the model as a HuggingFace directory plus a pickle of the trainer's state."""
import os
import pickle

TRAINER_STATE = "trainer_state.pkl"


def _to_numpy(state):
    return {i: {k: (v if isinstance(v, (int, float)) else v.numpy()) for k, v in s.items()}
            for i, s in state.items()}


def save(out_dir, model, optimizer, scheduler, step, history):
    model.save_pretrained(out_dir)
    opt_state = optimizer.state_dict()
    opt_state["state"] = _to_numpy(opt_state["state"])
    trainer = {"step": step, "optimizer": opt_state, "scheduler": scheduler.state_dict(), "history": history}
    tmp = os.path.join(out_dir, TRAINER_STATE + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(trainer, f)
    os.replace(tmp, os.path.join(out_dir, TRAINER_STATE))


def exists(out_dir):
    return os.path.exists(os.path.join(out_dir, TRAINER_STATE))


def load_trainer_state(out_dir):
    with open(os.path.join(out_dir, TRAINER_STATE), "rb") as f:
        return pickle.load(f)
