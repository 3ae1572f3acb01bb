r"""What the commands run on: the embedded digits data and a user's image folder
(:mod:`~captum_prune.zoo.data`), the digits model and a user's model
(:mod:`~captum_prune.zoo.models`), and the training recipe with the model cache
(:mod:`~captum_prune.zoo.training`)."""
