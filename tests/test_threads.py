"""Threads: one BLAS thread per process while ppokit trains, the user's setting back afterwards."""


def test_training_uses_one_blas_thread_and_gives_the_setting_back():
    from threadpoolctl import threadpool_info, threadpool_limits

    from ppokit import PPO

    def blas_threads():
        return {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}

    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        seen = []
        config = {"n_envs": 2, "n_steps": 32, "minibatch_size": 32, "total_steps": 128, "tensorboard": False}
        PPO("CartPole-v1", config, verbose=False, progress_bar=False).learn(callback=lambda m: seen.append(blas_threads()) and None)
        assert seen and all(threads == {1} for threads in seen)
        assert blas_threads() == before
        seen.clear()
        PPO("CartPole-v1", config | {"blas_threads": 0}, verbose=False, progress_bar=False).learn(callback=lambda m: seen.append(blas_threads()) and None)
        assert all(threads == before for threads in seen)  # 0: the library's own setting
