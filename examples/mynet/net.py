"""The worked example of the README's "Your own network": a PyTorch model and its data, as gdexp takes them.

    pip install 'gdexp[torch]'
    cd examples      # the folder that holds mynet/
    gdexp -m loss=torch loss.model=mynet.net.model loss.data=mynet.net.data loss.batch_size=64 \
          optimizer=adam 'optimizer.lr=logspace(1e-4,1e-1,8)' seed=0 stopping.maxiter=300 tracking.eval_every=50

benchmarks/bench_torch.py trains `model` (on breast_cancer) and `conv` (on digits).
"""
import torch
from sklearn.datasets import load_breast_cancer


def model():          # a fresh torch.nn.Module; gdexp seeds torch before each call
    return torch.nn.Sequential(torch.nn.Linear(30, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64),
                               torch.nn.Tanh(), torch.nn.Linear(64, 2))


def data():           # (X, y) or (X, y, X_val, y_val): tensors or numpy arrays
    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return X[:455], y[:455], X[455:], y[455:]


def conv():
    """A small convolutional network for digits' 8x8 images (64 features, 10 classes)."""
    return torch.nn.Sequential(torch.nn.Unflatten(1, (1, 8, 8)), torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(8 * 4 * 4, 10))
