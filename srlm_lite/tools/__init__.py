"""Tools around the loop: `bench` (speed, ours vs a baseline), `doctor` (environment and engine parity), the
gallery and chat (a run's models answering), and the PyTorch twin of our DPO step used by the bench."""
